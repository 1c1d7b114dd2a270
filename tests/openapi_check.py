#!/usr/bin/env python3
"""Checks an OpenAPI document and real answers against it, for tests/openapi.rs.

Reads one JSON object on stdin: {"document": <the OpenAPI document>, "answers": [{"method",
"path" (the route template), "status", "body"}, ...]}. Validates the document with
openapi-spec-validator, then each answer's body against the schema the document gives that
operation and status (JSON Schema 2020-12, which OpenAPI 3.1 schemas are). Prints one problem a
line; prints nothing when all is well. Exits 0 either way: the caller reads the problems.
"""

import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate


def answer_problems(document, answer):
    where = f"{answer['method']} {answer['path']} -> {answer['status']}"
    operation = document.get("paths", {}).get(answer["path"], {}).get(answer["method"].lower())
    if operation is None:
        return [f"{where}: operation not in the document"]
    response = operation.get("responses", {}).get(str(answer["status"]))
    if response is None:
        return [f"{where}: status not documented"]
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return [f"{where}: no JSON schema documented"]
    # The operation's schema refers to #/components/...: resolve it inside the document.
    root = dict(schema, components=document.get("components", {}))
    return [
        f"{where}: {'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in Draft202012Validator(root).iter_errors(answer["body"])
    ]


def main():
    given = json.load(sys.stdin)
    document = given["document"]
    problems = []
    try:
        validate(document)
    except Exception as error:  # the validator's own exception types vary between versions
        problems.append(f"document: {type(error).__name__}: {error}".splitlines()[0])
    for answer in given.get("answers", []):
        problems.extend(answer_problems(document, answer))
    for problem in problems:
        print(problem)


if __name__ == "__main__":
    main()
