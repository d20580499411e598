//! What the suites share: the in-process cluster harness, one in-process member, `batond` as a
//! child process, and the two workloads that both the in-process cluster and the Docker fault
//! suite run (registers checked for linearizability, the fenced lock counter).

pub mod batond;
pub mod fenced;
pub mod harness;
pub mod member;
pub mod registers;
