//! Exactly-once counter: a few clients increment `/df/counter/value` with compare-and-set
//! (read the value and its version, then a Multi of `SetData(value + 1, version)` and
//! `Create(/df/counter/ops/<token>)`), each with its own `baton::client::Client`, which sends
//! a write whose outcome is unknown again with the same request id until its deadline. The
//! token node records, in the same entry as the increment, which increment was applied.
//!
//! Checked after healing (the counter and the token list read on every member):
//! * the counter equals the number of token nodes (the Multi is atomic);
//! * every acknowledged increment's token is there (nothing acknowledged is lost);
//! * no token is there whose increment the client was told failed (`BAD_VERSION` from a
//!   retry of an increment that had in fact been applied would show up here);
//! * duplicated applications = counter − acknowledged − applied among the unknown ones,
//!   which must be 0: with request ids a retried increment is answered with its original
//!   result, so the client never increments again for a write that was already applied.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::client::{Client, ClientOptions, CreateOptions, MultiOps, MultiResponse};
use baton::proto::v1::op_result;
use serde::Serialize;

use super::cluster::{client_options, error_label, write_not_applied, Cluster};

pub const ROOT: &str = "/df/counter";
const VALUE: &str = "/df/counter/value";
const OPS: &str = "/df/counter/ops";
pub const WORKERS: usize = 3;
/// Deadline of one increment, retries included: long, so that few outcomes stay unknown.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long one attempt may go unanswered before the client sends it again (same id) to the
/// next member.
const ATTEMPT: Duration = Duration::from_millis(300);

/// Increments by outcome, over all workers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    /// Acknowledged: tokens.
    pub acked: Vec<String>,
    /// Refused (`BAD_VERSION`: another increment got in first) or definitely not applied.
    pub refused: Vec<String>,
    /// Unknown outcome past the deadline.
    pub unknown: Vec<String>,
    /// Errors by label.
    pub errors: std::collections::BTreeMap<String, u64>,
}

pub type Log = Arc<Mutex<Tally>>;

fn failed_reason(r: &MultiResponse) -> String {
    r.results
        .get(r.failed_op_index as usize)
        .and_then(|o| match &o.result {
            Some(op_result::Result::Error(e)) => Some(e.reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "?".into())
}

/// Creates the counter (value 0) and the token directory.
pub async fn setup(client: &Client) -> Result<(), String> {
    for (path, data) in [(ROOT, ""), (OPS, ""), (VALUE, "0")] {
        super::retry(Duration::from_secs(30), || async {
            match client.create(path, data, CreateOptions::persistent()).await {
                Ok(_) => Ok(()),
                Err(e) if e.is(baton::client::Reason::NodeExists) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|e| format!("create {path}: {e}"))?;
    }
    Ok(())
}

/// A worker's own client: every member, starting at `first`, with the long deadline and short
/// attempts, so that under a fault an attempt is often sent again while the first copy may
/// still be applied.
pub async fn client(cluster: &Cluster, first: usize) -> Result<Client, String> {
    let options = ClientOptions {
        write_attempt_timeout: ATTEMPT,
        ..client_options(DEADLINE)
    };
    let endpoints = cluster.endpoints_from(first);
    super::retry(Duration::from_secs(30), || async {
        Client::connect_with(&endpoints, options.clone())
            .await
            .map_err(|e| e.to_string())
    })
    .await
}

pub async fn worker(index: usize, client: Client, log: Log, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Ok((data, stat)) = client.get_data(VALUE).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(value) = String::from_utf8_lossy(&data).parse::<u64>() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        n += 1;
        let token = format!("w{index}-{n}");
        let ops = MultiOps::new()
            .set_data(VALUE, (value + 1).to_string(), stat.version)
            .create(&format!("{OPS}/{token}"), "", CreateOptions::persistent());
        let outcome = client.multi(ops.into_ops()).await;
        record(&log, token, outcome);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn record(log: &Log, token: String, outcome: Result<MultiResponse, baton::client::ClientError>) {
    let mut t = log.lock().unwrap_or_else(|p| p.into_inner());
    match outcome {
        Ok(r) if r.succeeded => t.acked.push(token),
        Ok(r) => {
            *t.errors.entry(failed_reason(&r)).or_default() += 1;
            t.refused.push(token);
        }
        Err(e) => {
            *t.errors.entry(error_label(&e)).or_default() += 1;
            if write_not_applied(&e) {
                t.refused.push(token);
            } else {
                t.unknown.push(token);
            }
        }
    }
}

/// What the final check found.
pub struct Report {
    pub figures: String,
    pub problems: Vec<String>,
    pub summary: serde_json::Value,
}

/// Reads the counter and the tokens on every member and checks them against the log.
pub async fn check(cluster: &Cluster, log: &Log) -> Report {
    let t = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut problems = Vec::new();
    let mut seen: Option<(u64, BTreeSet<String>)> = None;
    for (m, client) in cluster.members().iter().zip(&cluster.pinned) {
        let read = super::retry(Duration::from_secs(30), || async {
            let (data, _) = client.get_data(VALUE).await.map_err(|e| e.to_string())?;
            let value: u64 = String::from_utf8_lossy(&data)
                .parse()
                .map_err(|e| format!("counter {data:?}: {e}"))?;
            let tokens = client
                .get_all_children(OPS)
                .await
                .map_err(|e| e.to_string())?;
            Ok((value, tokens.into_iter().collect::<BTreeSet<String>>()))
        })
        .await;
        match read {
            Ok(r) => match &seen {
                Some(first) if *first != r => problems.push(format!(
                    "m{}: counter {} with {} tokens, another member {} with {}",
                    m.id,
                    r.0,
                    r.1.len(),
                    first.0,
                    first.1.len()
                )),
                Some(_) => {}
                None => seen = Some(r),
            },
            Err(e) => problems.push(format!("m{} cannot read the counter: {e}", m.id)),
        }
    }
    let Some((counter, tokens)) = seen else {
        problems.push("the counter could not be read".into());
        return Report {
            figures: "unread".into(),
            problems,
            summary: serde_json::json!(null),
        };
    };
    if counter != tokens.len() as u64 {
        problems.push(format!(
            "counter is {counter} but {} increments are recorded (a Multi was not atomic)",
            tokens.len()
        ));
    }
    let lost: Vec<&String> = t.acked.iter().filter(|k| !tokens.contains(*k)).collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged increments LOST: {:?}",
            lost.len(),
            lost.iter().take(10).collect::<Vec<_>>()
        ));
    }
    let misreported: Vec<&String> = t.refused.iter().filter(|k| tokens.contains(*k)).collect();
    if !misreported.is_empty() {
        problems.push(format!(
            "{} increments applied although the client was told they were not (a retry of an \
             applied write answered as a new one): {:?}",
            misreported.len(),
            misreported.iter().take(10).collect::<Vec<_>>()
        ));
    }
    let unknown_applied = t.unknown.iter().filter(|k| tokens.contains(*k)).count() as u64;
    let acked = t.acked.len() as u64;
    let duplicated = counter as i64 - acked as i64 - unknown_applied as i64;
    if duplicated != 0 {
        problems.push(format!(
            "counter {counter} != {acked} acknowledged + {unknown_applied} applied of unknown \
             outcome: {duplicated} duplicated applications"
        ));
    }
    if acked < 20 {
        problems.push(format!("too few acknowledged increments: {acked}"));
    }
    let figures = format!(
        "counter {counter} = {acked} acknowledged + {unknown_applied} of unknown outcome \
         applied ({} unknown in all); {} refused (conflicts); duplicated applications {duplicated}; \
         errors {:?}",
        t.unknown.len(),
        t.refused.len(),
        t.errors
    );
    let summary = serde_json::json!({
        "workers": WORKERS,
        "counter": counter,
        "acknowledged": acked,
        "unknown": t.unknown.len(),
        "unknown_applied": unknown_applied,
        "refused": t.refused.len(),
        "duplicated": duplicated,
        "errors": t.errors,
    });
    Report {
        figures,
        problems,
        summary,
    }
}
