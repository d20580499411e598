//! Compiles `proto/` into Rust with tonic-prost-build, using the protoc binary shipped in
//! `protoc-bin-vendored` so no system protoc is needed. Also writes the file descriptor set
//! served by gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/baton/v1/common.proto",
        "proto/baton/v1/znodes.proto",
        "proto/baton/v1/sessions.proto",
        "proto/baton/v1/watches.proto",
        "proto/baton/v1/cluster.proto",
        "proto/baton/raft/v1/raft.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("baton_descriptor.bin"))
        .bytes(".baton.raft.v1")
        .compile_protos(&protos, &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
