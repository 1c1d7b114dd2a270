//! Compiles the public protos: arbiter's own services and the seed's `ReplicationCoordinator`
//! (kept verbatim). protoc comes from protoc-bin-vendored, never from the system.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // The descriptors, for the nodes' gRPC server reflection.
    let descriptors =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("arbiter_descriptors.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptors)
        .build_client(true)
        .build_server(true)
        // Status is printed as JSON by the CLI and served over HTTP.
        .type_attribute(".arbiter.v1.NodeStatus", "#[derive(serde::Serialize)]")
        .type_attribute(".arbiter.v1.NodeInfo", "#[derive(serde::Serialize)]")
        // Their OpenAPI schema, for the server's document only (feature `openapi`).
        .type_attribute(
            ".arbiter.v1.NodeStatus",
            "#[cfg_attr(feature = \"openapi\", derive(utoipa::ToSchema))]",
        )
        .type_attribute(
            ".arbiter.v1.NodeInfo",
            "#[cfg_attr(feature = \"openapi\", derive(utoipa::ToSchema))]",
        )
        .compile_with_config(
            config,
            &[
                "../../proto/arbiter/v1/cluster.proto",
                "../../proto/arbiter/v1/lease.proto",
                "../../proto/arbiter/v1/routing.proto",
                "../../proto/codesprintpro/dr/replication/v1/replication.proto",
            ],
            &["../../proto"],
        )?;
    Ok(())
}
