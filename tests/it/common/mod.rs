//! What the suites share: the in-process cluster harness, one in-process member, `batond` as a
//! child process, and the two workloads that both the in-process cluster and the Docker fault
//! suite run (registers checked for linearizability, the fenced lock counter).

pub mod batond;
pub mod fenced;
pub mod harness;
pub mod member;
pub mod registers;

use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    for _ in 0..100_000 {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timed out after {} ms waiting for {what}",
        timeout.as_millis()
    );
}
