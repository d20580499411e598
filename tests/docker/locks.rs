//! Fenced lock counter workload — **NOT IMPLEMENTED YET; it does not run.**
//!
//! It waits for the Locks service (`Locks.Acquire/Release/Inspect`, `Multi` `CheckFence`),
//! which is being built. Nothing here is called by the suite, and the summary says
//! "locks: NOT RUN" so no run can be mistaken for having checked locks.
//!
//! The planned workload (Jepsen's lock workloads, made checkable with fencing tokens):
//! * a few workers, each with its own session, loop: `Acquire {path: /df/lock, session,
//!   wait_timeout}` → `{lock_node, fencing_token}`; read the counter `/df/lock-counter`
//!   (data = value, Stat.version); `Multi [CheckFence {lock_node, token}, SetData(counter,
//!   value + 1, version)]`; `Release`; under the same nemesis as the other workloads;
//! * record every grant (token, acquire call/return times, session) and every counter
//!   increment (token, old value, outcome: ok / failed / indeterminate);
//! * checks: fencing tokens strictly increase in grant order per lock path; no two
//!   acknowledged increments carry the same token; every acknowledged increment was fenced by
//!   the token that was current when it committed (the final counter value equals the number
//!   of acknowledged increments plus some subset of the indeterminate ones); a grant to a
//!   session known expired is a violation;
//! * also count, without failing, the overlapping holds *as the clients saw them* (a paused
//!   holder whose session expired still believes it holds the lock) — the hazard fencing
//!   exists for, reported as a figure like the notes' §8 asks.
//!
//! To add it: a `worker` here like `registers::client_loop`, spawned from `main.rs` next to
//! the other workloads (the "locks" slot in `run`), and its checks added to the final phase.

/// What the summary prints for this workload until it exists.
pub const STATUS: &str = "NOT RUN: the fenced lock counter waits for the Locks service \
                          (placeholder in tests/docker/locks.rs)";
