//! The one conversion layer between generated protobuf types and Baton's own: the generated
//! modules (public API `baton.v1`, internal `baton.raft.v1`), the descriptor set served by gRPC
//! reflection, and one file per boundary, each conversion written once:
//!
//! - [`client`]: the client API (`baton.v1`) ↔ domain (ACLs, stats, op outcomes, errors,
//!   lock contenders, watch kinds and events);
//! - [`peer`]: the peer RPCs ↔ openraft (votes, appends, snapshot chunks, forwarded answers);
//! - [`stored`]: stored records and log entries ↔ `baton.raft.v1` (the disk format, which the
//!   peer RPCs reuse).
//!
//! Generated types stop here and in [`crate::api`] (the gRPC services), the peer service and
//! client, and the stored-format framing (write-ahead log, snapshot files).

/// The public client API.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("baton.v1");
}

/// Internal formats: log entries, stored state, peer RPCs.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod raft {
    tonic::include_proto!("baton.raft.v1");
}

pub mod client;
pub mod peer;
pub mod stored;

pub use client::{acl_from_wire, acl_to_wire, create_mode, op_error};

/// Encoded `FileDescriptorSet` of every Baton proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("baton_descriptor");

/// A stored record or peer message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {what}: {reason}")]
pub struct CodecError {
    /// What was being decoded.
    pub what: &'static str,
    /// Why it failed.
    pub reason: String,
}

impl CodecError {
    /// A decoding failure of `what`.
    pub fn new(what: &'static str, reason: impl Into<String>) -> Self {
        CodecError {
            what,
            reason: reason.into(),
        }
    }

    /// `what` lacks its required `field`.
    pub(crate) fn missing_field(what: &'static str, field: &str) -> Self {
        CodecError::new(what, format!("missing field {field}"))
    }
}

/// Decodes a prost message, naming it in the error.
///
/// # Errors
/// Bytes that are not a `M`.
pub fn decode<M: prost::Message + Default>(
    what: &'static str,
    bytes: &[u8],
) -> Result<M, CodecError> {
    M::decode(bytes).map_err(|e| CodecError::new(what, e.to_string()))
}

/// A required message field (`what` names it), or an error.
pub(crate) fn need<T>(what: &'static str, v: Option<T>) -> Result<T, CodecError> {
    v.ok_or_else(|| CodecError::new(what, "missing field"))
}
