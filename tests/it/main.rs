//! Baton's integration tests, one test binary (`cargo test --test it`) with a module per suite;
//! a test's name starts with its module path, so `cargo test --test it -- api::` runs one
//! suite and `cargo test --test it -- cluster::scenarios::` a part of one.
//!
//! * [`api`]: the gRPC API end to end on one in-process member;
//! * [`locks`]: locks, semaphores, fencing and elections on one in-process member;
//! * [`cluster`]: in-process multi-member clusters with fault injection (scenarios,
//!   linearizability, exactly-once writes, ACLs, backup and restore, operations, failover);
//! * [`tls`]: TLS between clients and members and among members;
//! * [`durability`]: a `batond` process killed with SIGKILL during writes;
//! * [`processes`]: three `batond` processes killed, restarted, on a full disk;
//! * [`storage_suite`]: openraft's storage conformance suite;
//! * [`docker`]: the driver of the Docker fault suite (ignored; `scripts/docker-faults.sh`
//!   runs it against the cluster it creates).
//!
//! [`common`] holds what they share: the in-process cluster harness, one in-process member,
//! `batond` as a child process and the workloads of the in-process and Docker suites.
//!
//! All tests share this process: a test must not change the environment or other
//! process-wide state, takes its ports from the OS (port 0 or a free port chosen just before
//! use) and its directories from `tempfile`.

mod common;

mod api;
mod cluster;
mod docker;
mod durability;
mod locks;
mod processes;
mod storage_suite;
mod tls;
