//! Compiles the node-to-node Raft transport proto. protoc comes from protoc-bin-vendored, so a
//! fresh machine without a system protoc builds this crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &["proto/arbiter/v1/raft.proto"], &["proto"])?;
    Ok(())
}
