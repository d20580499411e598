//! Baton: ZooKeeper's data model over gRPC, replicated with openraft.
//!
//! # The write path, in order
//! 1. [`auth`]: the first layer of the client port names the caller and applies the method
//!    gate; [`ops::grpc`] counts, bounds and times the request around it.
//! 2. [`api`]: one file per gRPC service validates the request (paths, sizes, ACL lists),
//!    builds a [`tree::Request`] carrying the caller's ids and the request id, and hands it to
//!    the [`member`] facade, the one way from the services into the core; its errors
//!    ([`error::BatonError`]) become gRPC statuses in one place.
//! 3. [`consensus::proposer`]: packs waiting requests into one log entry (group commit); on a
//!    follower it forwards the batch to the leader over the peer port
//!    ([`consensus::peer_service`]). Every request that only the leader serves finds it, and
//!    is sent to it, through [`consensus::forward`].
//! 4. openraft appends the entry to the write-ahead log ([`store::wal`], [`store::log`]) and
//!    replicates it ([`consensus::network`]); a majority's `fdatasync` commits it.
//! 5. [`consensus::state_machine`] applies it (`apply`, then `records` in sled): [`tree::state`] changes the in-memory tree (ACLs
//!    checked by [`tree::acl`], request ids by [`tree::clients`]), the changes are written
//!    behind to sled ([`store`]), and the events go to the [`watch`] hub.
//! 6. The proposer answers each request with its result and zxid.
//!
//! # The read path
//! [`api`] → [`member`] → [`consensus::reads`] (a leader-confirmed read index shared by concurrent reads,
//! or nothing for SERIALIZABLE) → wait for local apply → read the in-memory tree, checking the
//! node's ACL.
//!
//! # Around them
//! [`server`] starts and stops a member and owns its background tasks (joined on stop); [`consensus::failover`] replaces a dead leader within
//! milliseconds and hands the leadership over; [`consensus::snapshot`] writes and reads
//! snapshot files from a point-in-time view of the tree; [`consensus::rejoin`] holds the vote
//! of a member that starts without data until it has caught up; [`tls`] secures both ports;
//! [`backup`] streams and restores snapshots; [`ops`] serves metrics and health (reading the
//! [`member`]); [`client`] and [`cli`] are the Rust client and the `baton` command.
//!
//! `check` is the linearizability checker the tests use, behind the cargo feature `check`
//! (off by default, so `batond` and `baton` are built without it; `cargo test` turns it on
//! through the dev-dependency on this package).
//!
//! # Underneath
//! [`types`] holds the openraft type configuration and the aliases everything names;
//! [`proto`] is the one conversion layer between the generated protobuf types and ours (client
//! API, peer RPCs, stored records).

// The map above names internal modules (`pub(crate)`): `cargo doc --document-private-items`
// renders their pages.
#![allow(rustdoc::private_intra_doc_links)]
pub mod api;
pub mod auth;
pub mod backup;
#[cfg(any(test, feature = "check"))]
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod consensus;
pub mod error;
pub(crate) mod member;
pub mod ops;
pub mod proto;
pub mod server;
pub(crate) mod shutdown;
pub(crate) mod stages;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tree;
pub mod types;
pub mod watch;
