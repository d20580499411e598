//! Compiles `proto/` into Rust with tonic-prost-build, using the protoc binary shipped in
//! `protoc-bin-vendored` so no system protoc is needed. The public API's descriptor set (served
//! by gRPC reflection on the client port) is written separately from the internal protos, so
//! reflection never advertises the peer service.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let public = [
        "proto/baton/v1/common.proto",
        "proto/baton/v1/znodes.proto",
        "proto/baton/v1/sessions.proto",
        "proto/baton/v1/watches.proto",
        "proto/baton/v1/cluster.proto",
        "proto/baton/v1/locks.proto",
        "proto/baton/v1/elections.proto",
        "proto/baton/v1/maintenance.proto",
        "proto/baton/v1/auth.proto",
    ];
    let internal = [
        "proto/baton/raft/v1/raft.proto",
        "proto/baton/raft/v1/peer.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("baton_descriptor.bin"))
        // Backup chunks are slices of one encoded snapshot, sent without a copy.
        .bytes(".baton.v1.BackupChunk")
        .compile_protos(&public, &["proto"])?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("baton_internal_descriptor.bin"))
        .bytes(".baton.raft.v1")
        .compile_protos(&internal, &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
