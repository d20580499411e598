//! The metrics port: `/metrics` (OpenMetrics text), `/livez`, `/readyz` (each with
//! `?verbose` and `?exclude=<check>`, and one check at `/livez/<check>`), and etcd's
//! `/health`. GET only; it serves no data of the tree.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get as route_get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::warn;

use super::health::{Health, Outcome, Probe};
use crate::shutdown::Shutdown;

/// A GET of `path` on a metrics port, as a probe or a test makes it: the status code and
/// the body. Plain HTTP/1.1 on one connection, no redirects.
///
/// # Errors
/// The connection failed, timed out (`timeout` for the whole exchange), or the answer is
/// not HTTP.
pub async fn get(
    addr: &str,
    path: &str,
    timeout: std::time::Duration,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))??;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).map_err(|_| bad())?;
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail.get(n + 2..).unwrap_or("");
        }
        out
    } else {
        body.to_string()
    };
    Ok((code, body))
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct Port {
    registry: Arc<Registry>,
    health: Health,
}

/// Serves the metrics port on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Health,
    mut shutdown: Shutdown,
) {
    let state = Port {
        registry: Arc::new(registry),
        health,
    };
    let app = Router::new()
        .route("/metrics", route_get(metrics))
        .route("/livez", route_get(livez))
        .route("/readyz", route_get(readyz))
        .route("/livez/{check}", route_get(livez_one))
        .route("/readyz/{check}", route_get(readyz_one))
        .route("/health", route_get(health_json))
        .with_state(state);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await;
    if let Err(e) = r {
        warn!(error = %e, "the metrics port stopped");
    }
}

async fn metrics(State(p): State<Port>) -> Response {
    let registry = p.registry.clone();
    let text = tokio::task::spawn_blocking(move || {
        let mut out = String::with_capacity(32 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry).map(|()| out)
    })
    .await;
    match text {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

/// `verbose` and every `exclude=<check>` of a query string.
fn options(query: Option<String>) -> (bool, Vec<String>) {
    let mut verbose = false;
    let mut exclude = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "verbose" => verbose = true,
            "exclude" => exclude.push(v.to_string()),
            _ => {}
        }
    }
    (verbose, exclude)
}

fn report(probe: &str, outcomes: &[Outcome], verbose: bool) -> Response {
    let ok = outcomes.iter().all(|o| o.failure.is_none());
    let mut body = String::new();
    for o in outcomes {
        match &o.failure {
            None if verbose => body.push_str(&format!("[+]{} ok\n", o.name)),
            None => {}
            Some(f) => body.push_str(&format!("[-]{} failed: {f}\n", o.name)),
        }
    }
    if ok {
        if verbose {
            body.push_str(&format!("{probe} check passed\n"));
        } else {
            body.push_str("ok\n");
        }
        (StatusCode::OK, body).into_response()
    } else {
        body.push_str(&format!("{probe} check failed\n"));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn probe(p: &Port, which: Probe, query: Option<String>) -> Response {
    let (verbose, exclude) = options(query);
    let outcomes = p.health.run(which, &exclude).await;
    let name = match which {
        Probe::Live => "livez",
        Probe::Ready => "readyz",
    };
    report(name, &outcomes, verbose)
}

async fn livez(State(p): State<Port>, RawQuery(q): RawQuery) -> Response {
    probe(&p, Probe::Live, q).await
}

async fn readyz(State(p): State<Port>, RawQuery(q): RawQuery) -> Response {
    probe(&p, Probe::Ready, q).await
}

async fn one(p: &Port, which: Probe, check: &str) -> Response {
    match p.health.check(which, check).await {
        Some(o) => report(check, &[o], true),
        None => (
            StatusCode::NOT_FOUND,
            format!(
                "no check {check:?}; checks: {}\n",
                Health::names(which).join(", ")
            ),
        )
            .into_response(),
    }
}

async fn livez_one(State(p): State<Port>, Path(check): Path<String>) -> Response {
    one(&p, Probe::Live, &check).await
}

async fn readyz_one(State(p): State<Port>, Path(check): Path<String>) -> Response {
    one(&p, Probe::Ready, &check).await
}

async fn health_json(State(p): State<Port>) -> Response {
    let (ok, reason) = p.health.health().await;
    let body = serde_json::json!({
        "health": if ok { "true" } else { "false" },
        "reason": reason,
    })
    .to_string();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
