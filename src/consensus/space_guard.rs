//! The guard of the NOSPACE alarm (see [`super::space`]): measures this member's data
//! directory twice a second and raises or clears its alarm node through the proposer; on the
//! leader it also clears the alarms of members that left. The decisions (thresholds, what a
//! raised alarm lets through) stay in `space`, which the proposer consults; this loop is
//! the only part that proposes, so the two modules import each other in one direction only.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use super::forward;
use super::proposer::Proposer;
use super::space::{alarm_path, measure, raised, Space, SpaceAlarm, ALARMS, CHECK_EVERY};
use super::state_machine::SmShared;
use super::Raft;
use crate::error::BatonError;
use crate::shutdown::Shutdown;
use crate::tree::{CreateMode, Op, Request, RequestResult};

/// Proposes a create of a persistent node; an existing node is success.
async fn create(proposer: &Proposer, path: &str, data: Bytes) -> Result<(), BatonError> {
    let req = Request::Multi {
        ops: vec![Op::Create {
            path: path.to_string(),
            data,
            mode: CreateMode::Persistent,
            session_id: 0,
            ttl_ms: 0,
            acl: Vec::new(),
        }],
        single: true,
        caller: None,
    };
    match proposer.propose(req).await? {
        (RequestResult::Multi(Err(f)), _) if !matches!(f.error, BatonError::NodeExists(_)) => {
            Err(f.error)
        }
        _ => Ok(()),
    }
}

/// Proposes the delete of `path`; a missing node is success.
async fn delete(proposer: &Proposer, path: &str) -> Result<(), BatonError> {
    let req = Request::Multi {
        ops: vec![Op::Delete {
            path: path.to_string(),
            version: -1,
        }],
        single: true,
        caller: None,
    };
    match proposer.propose(req).await? {
        (RequestResult::Multi(Err(f)), _) if !matches!(f.error, BatonError::NoNode(_)) => {
            Err(f.error)
        }
        _ => Ok(()),
    }
}

async fn raise(proposer: &Proposer, id: u64, why: &str) -> Result<(), BatonError> {
    create(proposer, "/baton", Bytes::new()).await?;
    create(proposer, ALARMS, Bytes::new()).await?;
    create(proposer, &alarm_path(id), Bytes::from(why.to_string())).await
}

/// Everything the guard needs.
pub struct Guard {
    /// This member.
    pub my_id: u64,
    /// The data directory measured.
    pub dir: PathBuf,
    /// Where refusals are decided.
    pub alarm: Arc<SpaceAlarm>,
    /// The replicated tree.
    pub shared: Arc<SmShared>,
    /// For raising and clearing alarms.
    pub proposer: Proposer,
    /// For the membership and the leader.
    pub raft: Raft,
}

/// Measures, raises and clears this member's alarm until shutdown.
pub async fn run(g: Guard, mut shutdown: Shutdown) {
    // With both limits off nothing is measured, but an alarm this member raised before (with
    // other settings) is still cleared.
    let limits = g.alarm.limits();
    let unchecked = limits.reserve == 0 && limits.quota == 0;
    let mut reported = false;
    for round in 0u64.. {
        if round > 0 {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
        let dir = g.dir.clone();
        let space = match tokio::task::spawn_blocking(move || {
            if unchecked {
                Ok(Space { free: 0, used: 0 })
            } else {
                measure(&dir)
            }
        })
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                if !reported {
                    warn!(error = %e, "cannot measure the data directory's free space");
                    reported = true;
                }
                continue;
            }
            Err(_) => continue,
        };
        let (mine, stale) = {
            let tree = g.shared.tree.read().unwrap_or_else(|e| e.into_inner());
            let alarms = raised(&tree);
            let m = g.raft.metrics();
            let m = m.borrow();
            let members: Vec<u64> = m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect();
            let mine = alarms.iter().any(|(id, _)| *id == g.my_id);
            let stale: Vec<u64> = alarms
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| !members.contains(id))
                .collect();
            (mine, stale)
        };
        let short = limits.short(&space);
        // While short, stay short until clear of the margin (no flapping at the threshold).
        let was_short = g.alarm.local_short();
        let verdict = match (&short, was_short) {
            (Some(why), _) => Some(why.clone()),
            (None, Some(why)) if !limits.recovered(&space) => Some(why),
            (None, _) => None,
        };
        g.alarm.measured(space, verdict.clone());
        if let Some(why) = verdict {
            if !mine {
                warn!(
                    free_bytes = space.free,
                    used_bytes = space.used,
                    reason = %why,
                    "raising the NOSPACE alarm: writes that add data are refused until space is freed"
                );
                if let Err(e) = raise(&g.proposer, g.my_id, &why).await {
                    warn!(error = %e, "could not raise the NOSPACE alarm; will retry");
                }
            }
        } else if mine && limits.recovered(&space) {
            info!(
                free_bytes = space.free,
                used_bytes = space.used,
                "space is back; clearing the NOSPACE alarm"
            );
            if let Err(e) = delete(&g.proposer, &alarm_path(g.my_id)).await {
                warn!(error = %e, "could not clear the NOSPACE alarm; will retry");
            }
        }
        if !stale.is_empty() && forward::is_leader(&g.raft, g.my_id) {
            for id in stale {
                info!(
                    member = id,
                    "clearing the NOSPACE alarm of a member that left"
                );
                if let Err(e) = delete(&g.proposer, &alarm_path(id)).await {
                    warn!(error = %e, member = id, "could not clear a departed member's alarm");
                }
            }
        }
    }
}
