//! Generated protobuf modules (public API `baton.v1`, internal `baton.raft.v1`) and the
//! descriptor set served by gRPC reflection.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The public client API.
pub mod v1 {
    tonic::include_proto!("baton.v1");
}

/// Internal formats: log entries, stored state, peer RPCs.
pub mod raft {
    tonic::include_proto!("baton.raft.v1");
}

/// Encoded `FileDescriptorSet` of every Baton proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("baton_descriptor");
