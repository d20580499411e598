//! Sessions and ephemeral nodes. Workers repeatedly open a session, create a few ephemeral
//! nodes under `/df/eph` owned by it, keep it alive for a while, then either close it or drop
//! it without closing and poll `Sessions.Get` until the server reports it expired (bounded;
//! faults delay expiry, since a new leader gives every session a fresh timeout).
//!
//! Checks:
//! * **as soon as a session is known closed or expired** (Close acknowledged, or the server
//!   answered `SESSION_EXPIRED` for it), a linearizable listing of `/df/eph` shows none of its
//!   ephemerals;
//! * at the end, for every session still alive: listed after the listing, the session is
//!   alive, so every acknowledged ephemeral of it is in that listing; after closing it, none is;
//! * after healing, every session expires or is closed within a bound (Sessions.List empty),
//!   and then `/df/eph` is empty on every member.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::client::{ChildrenOptions, Client, ClientError, CreateOptions, Session, SessionState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::cluster::{error_label, write_not_applied};
use super::registers::{Counts, Rec};

pub const DIR: &str = "/df/eph";
/// Requested session timeout.
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(4000);
/// How long a worker waits for a dropped session to expire before leaving it to the final
/// phase (expiry restarts with every leader change, so faults can delay it).
const EXPIRY_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Serialize)]
pub enum SessionEnd {
    /// Close acknowledged.
    Closed,
    /// The server said `SESSION_EXPIRED`.
    Expired { how: String },
    /// Keepalives stopped without a known end (dropped, close failed, lost locally): the
    /// server must expire it; verified at the end.
    Abandoned { why: String },
    /// Still alive when the workload stopped; handled by the final phase.
    Running,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionRecord {
    pub worker: usize,
    pub id: u64,
    pub opened_ns: u64,
    pub acked: Vec<String>,
    pub failed: Vec<String>,
    pub indeterminate: Vec<String>,
    pub end: SessionEnd,
    pub end_ns: Option<u64>,
    /// When the listing that verified "no ephemerals left" was taken.
    pub checked_ns: Option<u64>,
    /// Ephemerals found after the session was known dead (violations).
    pub leftover: Vec<String>,
    /// For a session dropped without closing: how long until the server reported it expired.
    pub expiry_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EphStats {
    pub opens: Counts,
    pub creates: Counts,
    pub closed: u64,
    pub expired_known: u64,
    pub abandoned: u64,
    pub immediate_checks: u64,
    /// Dropped sessions whose expiry was then observed (Get answered `SESSION_EXPIRED`).
    pub expired_after_drop: u64,
    /// Time from drop to observed expiry, per such session (ms).
    pub expiry_ms: Vec<u64>,
    pub unchecked: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
}

pub type EphLog = Arc<Mutex<(Vec<SessionRecord>, EphStats)>>;

/// Names and owners of the children of [`DIR`] (one linearizable listing, paged).
pub async fn list(client: &Client) -> Result<Vec<(String, u64)>, ClientError> {
    let children = client
        .get_all_children_with(DIR, ChildrenOptions::with_stats())
        .await?;
    Ok(children
        .into_iter()
        .map(|c| {
            let owner = c.stat.map(|s| s.ephemeral_owner).unwrap_or(0);
            (c.name, owner)
        })
        .collect())
}

/// [`list`], retried for up to 15 s.
pub async fn list_retry(client: &Client) -> Result<Vec<(String, u64)>, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_secs(5), list(client)).await {
            Ok(Ok(l)) => return Ok(l),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "listing timed out".into(),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// Verifies that none of `rec`'s ephemerals remain (the session is known dead).
async fn check_gone(client: &Client, clock: &Rec, rec: &mut SessionRecord, stats: &EphLog) {
    match list_retry(client).await {
        Ok(children) => {
            rec.checked_ns = Some(clock.now_ns());
            rec.leftover = children
                .into_iter()
                .filter(|(_, owner)| *owner == rec.id)
                .map(|(name, _)| name)
                .collect();
            stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .immediate_checks += 1;
        }
        Err(_) => {
            // Verified by the final phase instead (DIR must end up empty).
            stats.lock().unwrap_or_else(|p| p.into_inner()).1.unchecked += 1;
        }
    }
}

fn note_error(stats: &EphLog, what: &str, e: &ClientError) {
    let mut g = stats.lock().unwrap_or_else(|p| p.into_inner());
    *g.1.errors
        .entry(format!("{what}: {}", error_label(e)))
        .or_default() += 1;
}

/// One worker; returns the sessions still alive when `stop` was set.
pub async fn worker(
    index: usize,
    client: Client,
    clock: Rec,
    log: EphLog,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> Vec<(SessionRecord, Session)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut running = Vec::new();
    for _ in 0..1_000_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let session = match tokio::time::timeout(
            Duration::from_secs(5),
            client.open_session(SESSION_TIMEOUT),
        )
        .await
        {
            Ok(Ok(s)) => {
                log.lock().unwrap_or_else(|p| p.into_inner()).1.opens.ok += 1;
                s
            }
            Ok(Err(e)) => {
                {
                    let mut g = log.lock().unwrap_or_else(|p| p.into_inner());
                    if write_not_applied(&e) {
                        g.1.opens.fail += 1;
                    } else {
                        g.1.opens.info += 1;
                    }
                }
                note_error(&log, "open", &e);
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            Err(_) => {
                log.lock().unwrap_or_else(|p| p.into_inner()).1.opens.info += 1;
                continue;
            }
        };
        let sid = session.id();
        let mut rec = SessionRecord {
            worker: index,
            id: sid,
            opened_ns: clock.now_ns(),
            acked: Vec::new(),
            failed: Vec::new(),
            indeterminate: Vec::new(),
            end: SessionEnd::Running,
            end_ns: None,
            checked_ns: None,
            leftover: Vec::new(),
            expiry_ms: None,
        };
        let mut dead: Option<String> = None;
        for j in 0..rng.gen_range(1..=3) {
            let name = format!("s{sid:016x}-{j}");
            let res = tokio::time::timeout(
                Duration::from_secs(3),
                client.create(&format!("{DIR}/{name}"), "", CreateOptions::ephemeral(sid)),
            )
            .await;
            let mut g = log.lock().unwrap_or_else(|p| p.into_inner());
            match res {
                Ok(Ok(_)) => {
                    g.1.creates.ok += 1;
                    rec.acked.push(name);
                }
                Ok(Err(e)) if e.is(baton::client::Reason::SessionExpired) => {
                    g.1.creates.ok += 1;
                    dead = Some("create answered SESSION_EXPIRED".into());
                    break;
                }
                Ok(Err(e)) => {
                    *g.1.errors
                        .entry(format!("create: {}", error_label(&e)))
                        .or_default() += 1;
                    if write_not_applied(&e) {
                        g.1.creates.fail += 1;
                        rec.failed.push(name);
                    } else {
                        g.1.creates.info += 1;
                        rec.indeterminate.push(name);
                    }
                }
                Err(_) => {
                    g.1.creates.info += 1;
                    rec.indeterminate.push(name);
                }
            }
        }
        let mut abandoned: Option<String> = None;
        let mut dropped = false;
        if dead.is_none() {
            let live = Duration::from_millis(rng.gen_range(1000..6000));
            if let Ok(state) = tokio::time::timeout(live, session.lost()).await {
                let reason = match state {
                    SessionState::Lost { reason } => reason,
                    other => format!("{other:?}"),
                };
                if reason.contains("SESSION_EXPIRED") {
                    dead = Some(format!("keepalive: {reason}"));
                } else {
                    // Lost locally (not refreshed in time); ask the server.
                    match tokio::time::timeout(Duration::from_secs(3), client.get_session(sid))
                        .await
                    {
                        Ok(Err(e)) if e.is(baton::client::Reason::SessionExpired) => {
                            dead = Some(format!("lost locally ({reason}); Get: SESSION_EXPIRED"))
                        }
                        _ => abandoned = Some(format!("lost locally: {reason}")),
                    }
                }
            }
        }
        if dead.is_none() && abandoned.is_none() {
            if stop.load(Ordering::Relaxed) {
                running.push((rec, session));
                break;
            }
            if rng.gen_bool(0.5) {
                match tokio::time::timeout(Duration::from_secs(5), session.close()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if e.is(baton::client::Reason::SessionExpired) => {
                        dead = Some("close answered SESSION_EXPIRED".into())
                    }
                    Ok(Err(e)) => {
                        note_error(&log, "close", &e);
                        abandoned = Some(format!("close failed: {e}"));
                    }
                    Err(_) => abandoned = Some("close timed out".into()),
                }
                if dead.is_none() && abandoned.is_none() {
                    rec.end = SessionEnd::Closed;
                }
            } else {
                abandoned = Some("dropped without closing".into());
                dropped = true;
            }
        }
        drop(session);
        rec.end_ns = Some(clock.now_ns());
        if dropped {
            // Keepalives stopped: wait (bounded) for the server to expire the session, so the
            // expiry path is checked while faults go on, not only at the end.
            let since = Instant::now();
            for _ in 0..100 {
                if since.elapsed() >= EXPIRY_WAIT {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                let res =
                    tokio::time::timeout(Duration::from_secs(3), client.get_session(sid)).await;
                if let Ok(Err(e)) = res {
                    if e.is(baton::client::Reason::SessionExpired) {
                        let ms = since.elapsed().as_millis() as u64;
                        rec.expiry_ms = Some(ms);
                        rec.end_ns = Some(clock.now_ns());
                        dead = Some(format!(
                            "dropped; Get answered SESSION_EXPIRED after {ms} ms"
                        ));
                        let mut g = log.lock().unwrap_or_else(|p| p.into_inner());
                        g.1.expired_after_drop += 1;
                        g.1.expiry_ms.push(ms);
                        break;
                    }
                }
            }
        }
        if let Some(how) = dead {
            rec.end = SessionEnd::Expired { how };
        } else if let Some(why) = abandoned {
            rec.end = SessionEnd::Abandoned { why };
        }
        match rec.end {
            SessionEnd::Closed => {
                log.lock().unwrap_or_else(|p| p.into_inner()).1.closed += 1;
                check_gone(&client, &clock, &mut rec, &log).await;
            }
            SessionEnd::Expired { .. } => {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .1
                    .expired_known += 1;
                check_gone(&client, &clock, &mut rec, &log).await;
            }
            SessionEnd::Abandoned { .. } => {
                log.lock().unwrap_or_else(|p| p.into_inner()).1.abandoned += 1;
            }
            SessionEnd::Running => {}
        }
        log.lock().unwrap_or_else(|p| p.into_inner()).0.push(rec);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..500))).await;
    }
    running
}

/// The final phase for sessions still alive: their acknowledged ephemerals exist while they
/// live, and are gone once they are closed. Returns the problems found.
pub async fn finish_running(
    client: &Client,
    clock: &Rec,
    running: Vec<(SessionRecord, Session)>,
    log: &EphLog,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (mut rec, session) in running {
        let listing = list_retry(client).await;
        let alive = tokio::time::timeout(Duration::from_secs(5), client.get_session(rec.id)).await;
        match (listing, alive) {
            (Ok(children), Ok(Ok(_))) => {
                // Alive after the listing, hence during it: every acknowledged node is listed.
                for name in &rec.acked {
                    if !children.iter().any(|(n, o)| n == name && *o == rec.id) {
                        problems.push(format!(
                            "session {:#x} is alive but its acknowledged ephemeral {name} is MISSING",
                            rec.id
                        ));
                    }
                }
            }
            (Err(e), _) => problems.push(format!("cannot list {DIR} at the end: {e}")),
            _ => {}
        }
        match tokio::time::timeout(Duration::from_secs(5), session.close()).await {
            Ok(Ok(())) => {
                rec.end = SessionEnd::Closed;
                log.lock().unwrap_or_else(|p| p.into_inner()).1.closed += 1;
            }
            Ok(Err(e)) if e.is(baton::client::Reason::SessionExpired) => {
                rec.end = SessionEnd::Expired {
                    how: "final close answered SESSION_EXPIRED".into(),
                };
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .1
                    .expired_known += 1;
            }
            Ok(Err(e)) => {
                problems.push(format!("closing session {:#x} after the heal: {e}", rec.id))
            }
            Err(_) => problems.push(format!(
                "closing session {:#x} after the heal timed out",
                rec.id
            )),
        }
        rec.end_ns = Some(clock.now_ns());
        if !matches!(rec.end, SessionEnd::Running) {
            check_gone(client, clock, &mut rec, log).await;
        }
        log.lock().unwrap_or_else(|p| p.into_inner()).0.push(rec);
    }
    problems
}

/// Problems recorded by the immediate checks.
pub fn leftovers(records: &[SessionRecord]) -> Vec<String> {
    records
        .iter()
        .filter(|r| !r.leftover.is_empty())
        .map(|r| {
            format!(
                "session {:#x} ended ({:?}) at {:.3} s, but a linearizable listing at {:.3} s still \
                 shows its ephemerals {:?}",
                r.id,
                r.end,
                r.end_ns.unwrap_or(0) as f64 / 1e9,
                r.checked_ns.unwrap_or(0) as f64 / 1e9,
                r.leftover
            )
        })
        .collect()
}
