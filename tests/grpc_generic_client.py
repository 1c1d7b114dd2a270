#!/usr/bin/env python3
"""A generic gRPC client, as grpcurl or a load balancer's health checker is: it has none of
arbiter's .proto files. It checks grpc.health.v1, lists the services through server reflection,
and calls one method whose request and response types it learned only from reflection.

Used by tests/grpc_tools.rs. Prints one JSON object; exits 0 unless the arguments are wrong.

    grpc_generic_client.py --addr 127.0.0.1:7001 --ca ca.pem [--token T] \
        [--health-service NAME] [--call arbiter.v1.ClusterService/GetStatus]
"""

import argparse
import json

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    parser.add_argument("--ca", required=True, help="CA certificate (PEM) of the cluster")
    parser.add_argument("--token", help="bearer token for calls that need credentials")
    parser.add_argument("--health-service", default="")
    parser.add_argument("--call", help="a method to call by reflection, SERVICE/METHOD")
    parser.add_argument("--request-id", help="x-request-id to send with --call")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()

    with open(args.ca, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    channel = grpc.secure_channel(args.addr, credentials)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    out = {}

    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=args.health_service), timeout=args.timeout
        )
        out["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError as e:
        out["health_error"] = e.code().name

    try:
        database = ProtoReflectionDescriptorDatabase(channel)
        # The database passes no metadata of its own: add ours to each of its calls.
        stub = database._stub
        info = stub.ServerReflectionInfo
        stub.ServerReflectionInfo = lambda requests, **kw: info(requests, metadata=metadata, **kw)
        out["services"] = sorted(database.get_services())
        if args.call:
            service_name, method_name = args.call.split("/")
            pool = descriptor_pool.DescriptorPool(database)
            method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            call = channel.unary_unary(
                f"/{service_name}/{method_name}",
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            call_metadata = list(metadata)
            if args.request_id:
                call_metadata.append(("x-request-id", args.request_id))
            response, rpc = call.with_call(
                request_class(), metadata=call_metadata, timeout=args.timeout
            )
            out["response"] = json_format.MessageToDict(response)
            out["request_id"] = dict(rpc.initial_metadata()).get("x-request-id")
    except grpc.RpcError as e:
        out["reflection_error"] = e.code().name

    print(json.dumps(out))


if __name__ == "__main__":
    main()
