//! Locks, read/write locks, semaphores and leader elections served by the cluster
//! (`baton.v1.Locks` and `baton.v1.Elections`).
//!
//! A lock is held by a [`Session`]: the grant lasts until it is released or the session ends
//! (closed, or expired because its keepalives stopped). Every grant carries a *fencing token*
//! that strictly increases across holders of a lock path; pass it with
//! [`MultiOps::check_fence`] so that a write commits only while the lock is still held:
//!
//! ```no_run
//! use std::time::Duration;
//! use baton::client::{Client, LockOptions, MultiOps};
//!
//! # async fn example() -> Result<(), baton::client::ClientError> {
//! let client = Client::connect(["127.0.0.1:7420"]).await?;
//! let session = client.open_session(Duration::from_secs(10)).await?;
//! let guard = client.lock("/locks/db", &session, LockOptions::exclusive()).await?;
//! let (data, stat) = client.get_data("/counter").await?;
//! let ops = MultiOps::new()
//!     .check_fence(guard.lock_node(), guard.fencing_token())
//!     .set_data("/counter", b"42".to_vec(), stat.version);
//! let outcome = client.multi(ops).await?;
//! assert!(outcome.succeeded, "not applied: the lock was lost meanwhile");
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```
//!
//! A call that fails after it may have queued a contender (connection lost, member stopped,
//! reply timed out) leaves no stray queue place behind for long: the library removes the
//! contenders of that session on that path that no live [`LockGuard`] or [`Leadership`] of
//! this process owns, once no other acquire of the same session on the same path is under
//! way. Contenders of other processes sharing the session are not known to it.
//!
//! The parts, one job each:
//! - [`options`]: [`LockOptions`] and [`MAX_LOCK_WAIT`], what an acquire asks for;
//! - [`lock`]: the lock calls of [`Client`] (`lock`, `try_lock`, `release`, `inspect`);
//! - [`guard`]: [`LockGuard`], a held lock, its session's loss and its release;
//! - [`fence`]: fencing tokens ([`MultiOps::check_fence`], [`Client::validate_fence`]);
//! - [`election`]: [`Leadership`] and the election calls (`campaign`, `proclaim`, `leader`,
//!   `resign`);
//! - [`observe`]: [`LeaderStream`], the changes of leader of an election;
//! - [`contender`]: queueing a contender (Acquire, TryAcquire, Campaign) with failover;
//! - [`removal`]: deleting contenders (Release, Resign, stray removal) through transient
//!   failures;
//! - [`registry`]: which contenders this process holds or may have left behind;
//! - [`stubs`]: the gRPC stubs of both services.
//!
//! [`Session`]: crate::client::Session
//! [`MultiOps::check_fence`]: crate::client::MultiOps::check_fence
//! [`Client`]: crate::client::Client
//! [`Client::validate_fence`]: crate::client::Client::validate_fence

mod contender;
mod election;
mod fence;
mod guard;
mod lock;
mod observe;
mod options;
mod registry;
mod removal;
mod stubs;

pub use election::Leadership;
pub use guard::LockGuard;
pub use observe::LeaderStream;
pub use options::{LockOptions, MAX_LOCK_WAIT};

pub use crate::proto::v1::{Contender, InspectResponse, LeaderResponse, LockMode};
