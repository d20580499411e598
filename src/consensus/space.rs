//! The NOSPACE alarm: a member short of disk space stops the cluster's writes before its disk
//! is full, instead of failing in the middle of one.
//!
//! Every member measures its data directory twice a second: the free space of its file system
//! against `--space-reserve-mb`, and the space the directory uses against `--quota-mb`. A member
//! that is short raises an alarm in the replicated tree, the node
//! `/baton/alarms/nospace-<member id>` (readable by anyone, writable by no client), and deletes
//! it once the space is back, with some margin so that it does not flap. While any alarm is
//! raised, and at once while the leader itself is short, the leader refuses every write that
//! adds data with `RESOURCE_EXHAUSTED` / `NOSPACE`. What frees space or adds none that lasts
//! goes on: reads, deletes, version and fence checks, session close and expiry, TTL expiry,
//! barriers, session keep-alives (not logged) and the alarms themselves. An alarm whose member
//! has left the membership is cleared by the leader.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::state_machine::SmShared;
use crate::error::BatonError;
use crate::tree::{Op, Request, State};

/// The folder of alarm nodes.
pub const ALARMS: &str = "/baton/alarms";

/// How often each member measures.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The alarm node of member `id`.
pub fn alarm_path(id: u64) -> String {
    format!("{ALARMS}/nospace-{id}")
}

/// The member id an alarm node's name stands for.
fn alarm_member(name: &str) -> Option<u64> {
    name.strip_prefix("nospace-")?.parse().ok()
}

/// What a member measured of its data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    /// Bytes free for an unprivileged writer on the directory's file system.
    pub free: u64,
    /// Bytes the directory's files occupy.
    pub used: u64,
}

/// Measures `dir`.
///
/// # Errors
/// The file system could not be queried.
pub fn measure(dir: &Path) -> std::io::Result<Space> {
    let st = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(Space {
        free: st.f_bavail.saturating_mul(st.f_frsize),
        used: dir_usage(dir),
    })
}

/// Bytes allocated to the files under `dir` (a file that vanishes meanwhile counts 0).
pub fn dir_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total = total.saturating_add(m.blocks().saturating_mul(512));
            }
        }
    }
    total
}

/// The thresholds of one member.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Free bytes kept in reserve (0 = unchecked).
    pub reserve: u64,
    /// Most bytes the data directory may use (0 = no quota).
    pub quota: u64,
}

impl Limits {
    /// Why `s` is short, if it is.
    pub fn short(&self, s: &Space) -> Option<String> {
        const MB: u64 = 1024 * 1024;
        if self.reserve > 0 && s.free < self.reserve {
            return Some(format!(
                "{} MiB free on the data directory's file system, below the reserve of {} MiB",
                s.free / MB,
                self.reserve / MB
            ));
        }
        if self.quota > 0 && s.used > self.quota {
            return Some(format!(
                "the data directory uses {} MiB, over the quota of {} MiB",
                s.used / MB,
                self.quota / MB
            ));
        }
        None
    }

    /// Whether `s` is clear of both limits by a margin (an eighth of each, at least 1 MiB),
    /// so that an alarm does not flap around the threshold.
    pub fn recovered(&self, s: &Space) -> bool {
        let margin = |v: u64| (v / 8).max(1024 * 1024);
        let free_ok = self.reserve == 0 || s.free >= self.reserve + margin(self.reserve);
        let used_ok = self.quota == 0 || s.used + margin(self.quota) <= self.quota;
        free_ok && used_ok
    }
}

/// Whether `req` may be proposed while the alarm is raised: it frees space, or adds none that
/// lasts.
pub fn allowed_during_alarm(req: &Request) -> bool {
    match req {
        Request::Multi { ops, .. } => ops.iter().all(|op| match op {
            Op::Delete { .. } | Op::Check { .. } | Op::CheckFence { .. } => true,
            Op::Create { path, .. } => {
                path == "/baton" || crate::tree::path::is_under(path, ALARMS)
            }
            Op::SetData { .. } | Op::SetAcl { .. } => false,
        }),
        Request::Tagged { request, .. } => allowed_during_alarm(request),
        Request::CloseSession { .. }
        | Request::ExpireClients { .. }
        | Request::ExpireSessions(_)
        | Request::ExpireTtl(_)
        | Request::Noop => true,
        Request::OpenSession { .. } => false,
    }
}

/// The alarms raised in `state`: (member id, why).
pub fn raised(state: &State) -> Vec<(u64, String)> {
    let Some(dir) = state.get(ALARMS) else {
        return Vec::new();
    };
    dir.children
        .iter()
        .filter_map(|name| {
            let id = alarm_member(name)?;
            let why = state
                .get(&format!("{ALARMS}/{name}"))
                .map(|n| String::from_utf8_lossy(&n.data).into_owned())
                .unwrap_or_default();
            Some((id, why))
        })
        .collect()
}

/// Disk bytes one byte of a proposed request may take soon (the log record, the state
/// machine's copy in sled, sled's own space amplification, measured at up to about 5 with
/// large values). The leader refuses writes as soon as the space expected after the writes it
/// admitted lately falls below the reserve, so that a burst between two measurements cannot
/// fill the disk.
const EXPECTED_AMPLIFICATION: u64 = 6;

/// What the proposer asks before it proposes writes: is the cluster, or this member, short?
pub struct SpaceAlarm {
    shared: Arc<SmShared>,
    limits: Limits,
    local: Mutex<Local>,
}

#[derive(Default)]
struct Local {
    /// Why this member is short, while it is.
    short: Option<String>,
    /// The last measurement.
    measured: Option<Space>,
    /// Request bytes admitted since the last measurement.
    admitted: u64,
    /// Request bytes admitted in the interval before that: written behind (sled, its
    /// buffers), they may not be on disk yet when measured.
    admitted_before: u64,
}

impl SpaceAlarm {
    /// An alarm reading the replicated tree of `shared`, with this member's `limits`.
    pub fn new(shared: Arc<SmShared>, limits: Limits) -> Arc<SpaceAlarm> {
        Arc::new(SpaceAlarm {
            shared,
            limits,
            local: Mutex::new(Local::default()),
        })
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why this member was short at its last measurement (`None`: it was not).
    pub(crate) fn local_short(&self) -> Option<String> {
        self.local().short.clone()
    }

    /// Records a measurement and this member's verdict on it.
    pub(crate) fn measured(&self, space: Space, short: Option<String>) {
        let mut l = self.local();
        l.measured = Some(space);
        l.admitted_before = std::mem::take(&mut l.admitted);
        l.short = short;
    }

    /// The last measurement of the data directory (none yet, or with both limits off).
    pub fn last_measured(&self) -> Option<Space> {
        self.local().measured
    }

    /// This member's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Counts request bytes the leader admitted since the last measurement.
    pub fn admitted(&self, bytes: u64) {
        let mut l = self.local();
        l.admitted = l.admitted.saturating_add(bytes);
    }

    /// The error writes that add data get now, if any.
    pub fn refusal(&self) -> Option<BatonError> {
        {
            let l = self.local();
            if let Some(why) = &l.short {
                return Some(BatonError::NoSpace(format!("the leader is short: {why}")));
            }
            if let Some(m) = l.measured {
                let grown = l
                    .admitted
                    .saturating_add(l.admitted_before)
                    .saturating_mul(EXPECTED_AMPLIFICATION);
                let expected = Space {
                    free: m.free.saturating_sub(grown),
                    used: m.used.saturating_add(grown),
                };
                if let Some(why) = self.limits.short(&expected) {
                    return Some(BatonError::NoSpace(format!(
                        "the leader expects to be short: {why}"
                    )));
                }
            }
        }
        let tree = self.shared.tree.read().unwrap_or_else(|e| e.into_inner());
        let alarms = raised(&tree);
        let (id, why) = alarms.first()?;
        Some(BatonError::NoSpace(format!(
            "alarm raised by member {id}: {why}"
        )))
    }
}

#[cfg(test)]
mod tests;
