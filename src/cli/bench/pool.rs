//! What every load loop uses: the connection pool (connection j to endpoint j % endpoints),
//! requests with a timeout whose errors become their kind, the pause after an error, and
//! creating a path's missing ancestors.

use std::time::Duration;

use tokio::time::Instant;

use super::args::BenchArgs;
use super::report::Window;
use crate::cli::CliError;
use crate::client::{Client, ClientError, ClientOptions, CreateOptions};

/// The error kind of a failed request: its reason, or its code's name.
pub(super) fn error_kind(e: &ClientError) -> String {
    e.reason().map_or_else(
        || crate::client::code_name(e.code()).to_string(),
        |r| r.to_string(),
    )
}

/// Runs `fut` with a timeout; errors become their kind.
pub(super) async fn timed<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error_kind(&e)),
        Err(_) => Err("TIMEOUT".to_string()),
    }
}

/// After an error, pause a little so a dead cluster does not turn the loop into a spin.
pub(super) async fn pause_after_error(window: &Window) {
    let until = (Instant::now() + Duration::from_millis(10)).min(window.end);
    tokio::time::sleep_until(until).await;
}

/// Opens `count` connections, connection j to endpoint j % endpoints (the other endpoints
/// follow in its list, so it fails over if its own is down).
pub(super) async fn connect_pool(
    endpoints: &[String],
    base: &ClientOptions,
    count: u64,
    args: &BenchArgs,
) -> Result<Vec<Client>, CliError> {
    let options = ClientOptions {
        timeout: Duration::from_millis(args.op_timeout),
        request_ids: !args.no_request_ids,
        ..base.clone()
    };
    let connects = (0..count).map(|j| {
        let list = rotated(endpoints, j);
        let options = options.clone();
        async move { Client::connect_with(list, options).await }
    });
    let clients = futures::future::join_all(connects).await;
    Ok(clients.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// The endpoints starting at j % len.
fn rotated(endpoints: &[String], j: u64) -> Vec<String> {
    let mut list = endpoints.to_vec();
    if !list.is_empty() {
        let by = usize::try_from(j % list.len() as u64).unwrap_or(0);
        list.rotate_left(by);
    }
    list
}

/// Creates `path` and any missing ancestors as persistent nodes.
pub(super) async fn ensure_path(client: &Client, path: &str) -> Result<(), CliError> {
    let mut prefix = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        match client
            .create(&prefix, Vec::new(), CreateOptions::persistent())
            .await
        {
            Ok(_) => {}
            Err(e) if e.is(crate::client::Reason::NodeExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_j_prefers_endpoint_j_mod_n() {
        let e: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(rotated(&e, 0), ["a", "b", "c"]);
        assert_eq!(rotated(&e, 1), ["b", "c", "a"]);
        assert_eq!(rotated(&e, 5), ["c", "a", "b"]);
        assert!(rotated(&[], 3).is_empty());
    }
}
