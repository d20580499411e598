//! Multi-member integration tests: a [`TestCluster`](crate::common::harness::TestCluster) of
//! in-process members on loopback with fault injection on their peer links, failure scenarios
//! written as specifications ([`scenarios`]), and a linearizability check of a concurrent
//! workload under a nemesis ([`linearizability`]).
//!
//! Run with `cargo test --test it -- cluster::`; `RUST_LOG=info` shows the members' logs,
//! `BATON_SOAK_SECS=300` lengthens the linearizability run.

mod acl;
mod backup;
mod exactly_once;
mod failover;
mod linearizability;
mod locks;
mod ops;
mod scenarios;
