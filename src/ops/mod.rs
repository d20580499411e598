//! Operating a member: Prometheus metrics, health checks and the HTTP port serving both,
//! the client port's request layer (per-method metrics, the in-flight bound, the slow-request
//! log) and its connection limits.

pub(crate) mod conns;
pub(crate) mod grpc;
pub(crate) mod health;
pub mod http;
pub(crate) mod metrics;
