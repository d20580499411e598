//! The vote hold of a member that starts with nothing: a new member, or one whose data
//! directory was lost or wiped and that comes back under its old id.
//!
//! Such a member has forgotten its vote and its log, and Raft's safety rests on both: it
//! could vote twice in one term, and, worse, it may have been one of the majority that held
//! an acknowledged write. Voting with an empty log, it could help elect a member that lacks
//! that write, which would then be lost. So a member that starts pristine (no log, no vote,
//! nothing applied) in a cluster it did not found records a **hold** before it serves any
//! peer request, and while the hold is on it
//! - refuses every vote, except for a candidate whose log holds only a new cluster's initial
//!   membership (index 0: nothing can have been acknowledged yet; without this a new cluster
//!   could not elect its first leader), and
//! - does not stand for election;
//!
//! the first leader that contacts it tells it its commit index, and the hold ends once the
//! member has applied up to that index (by log or by snapshot): from then on its log holds
//! every write acknowledged before it came back, and it votes like any other member. The
//! hold is kept in `raft_meta`, so a restart during the catch-up keeps it.
//!
//! A cluster that has lost its other members meanwhile cannot elect a leader with the help
//! of a held member: it waits for a member that has the data, which is the point.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::store::{Store, StoreError};

/// Key in `raft_meta` of the hold: 8 bytes, big-endian; absent when there is none.
pub const VOTE_HOLD_KEY: &[u8] = b"baton_vote_hold";
/// Hold until a leader makes contact (its commit index is not known yet).
const UNTIL_CONTACT: u64 = u64::MAX;
/// No hold.
const NONE: u64 = 0;

/// The hold of one member (see the module docs).
pub struct VoteHold {
    /// Applied index that ends the hold; [`UNTIL_CONTACT`] or [`NONE`].
    until: AtomicU64,
    store: Option<Store>,
}

impl VoteHold {
    /// Loads the recorded hold, and records a new one when the member starts `pristine`
    /// (nothing logged, voted or applied) without founding the cluster. Blocking.
    ///
    /// # Errors
    /// Storage errors reading or durably recording the hold.
    pub fn load(store: &Store, pristine_joiner: bool) -> Result<Arc<VoteHold>, StoreError> {
        let recorded = match store.raft_meta().get(VOTE_HOLD_KEY)? {
            Some(v) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                u64::from_be_bytes(b)
            }
            Some(_) => {
                return Err(StoreError::Corrupt(
                    "the vote-hold record is not 8 bytes".into(),
                ))
            }
            None => NONE,
        };
        let until = if recorded == NONE && pristine_joiner {
            store
                .raft_meta()
                .insert(VOTE_HOLD_KEY, &UNTIL_CONTACT.to_be_bytes())?;
            store.durable_flush()?;
            UNTIL_CONTACT
        } else {
            recorded
        };
        if until != NONE {
            tracing::info!(
                "this member starts without data in an existing cluster: it will not vote nor \
                 stand for election until it has caught up with the leader"
            );
        }
        Ok(Arc::new(VoteHold {
            until: AtomicU64::new(until),
            store: Some(store.clone()),
        }))
    }

    /// A hold that is not recorded anywhere (tests and tools); `on` starts it until contact.
    pub fn detached(on: bool) -> Arc<VoteHold> {
        Arc::new(VoteHold {
            until: AtomicU64::new(if on { UNTIL_CONTACT } else { NONE }),
            store: None,
        })
    }

    /// Whether the hold is on.
    pub fn holding(&self) -> bool {
        self.until.load(Ordering::SeqCst) != NONE
    }

    /// Whether a vote may be granted to a candidate whose log ends at `candidate_last`.
    pub fn may_vote(&self, candidate_last: Option<u64>) -> bool {
        !self.holding() || candidate_last.is_none_or(|i| i == 0)
    }

    /// A leader made contact, committed up to `leader_commit`: the hold now ends once that
    /// index is applied. Only the first contact sets it.
    pub fn contact(&self, leader_commit: Option<u64>) {
        let target = leader_commit.unwrap_or(0).max(1);
        if self
            .until
            .compare_exchange(UNTIL_CONTACT, target, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            tracing::info!(
                until = target,
                "a leader made contact: votes are held until this index is applied"
            );
            self.record(target);
        }
    }

    /// Ends the hold if `applied` reaches it; returns whether it ended now.
    pub fn applied(&self, applied: u64) -> bool {
        let until = self.until.load(Ordering::SeqCst);
        if until == NONE || until == UNTIL_CONTACT || applied < until {
            return false;
        }
        if self
            .until
            .compare_exchange(until, NONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        tracing::info!(
            applied,
            "caught up with the leader: this member votes and stands for election again"
        );
        self.record(NONE);
        true
    }

    /// Records the hold; not flushed: losing this write only keeps an earlier, stricter
    /// value (the start of a hold is flushed in [`VoteHold::load`]).
    fn record(&self, until: u64) {
        let Some(store) = &self.store else { return };
        let res = if until == NONE {
            store.raft_meta().remove(VOTE_HOLD_KEY).map(|_| ())
        } else {
            store
                .raft_meta()
                .insert(VOTE_HOLD_KEY, &until.to_be_bytes())
                .map(|_| ())
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not record the vote hold");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_member_votes_only_for_a_new_cluster_until_it_has_caught_up() {
        let h = VoteHold::detached(true);
        assert!(h.holding());
        assert!(h.may_vote(None) && h.may_vote(Some(0)));
        assert!(!h.may_vote(Some(1)) && !h.may_vote(Some(500)));
        assert!(!h.applied(1_000), "no contact yet: nothing ends the hold");
        h.contact(Some(120));
        h.contact(Some(900)); // only the first contact counts
        assert!(!h.applied(119));
        assert!(!h.may_vote(Some(500)));
        assert!(h.applied(120));
        assert!(!h.holding());
        assert!(h.may_vote(Some(500)));
        assert!(!h.applied(121), "ended once");
    }

    #[test]
    fn the_hold_is_recorded_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store =
                Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("open");
            let h = VoteHold::load(&store, true).expect("load");
            assert!(h.holding());
            h.contact(Some(40));
            store.durable_flush().expect("flush");
        }
        {
            let store =
                Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("open");
            // Not pristine any more, but the recorded hold stays until it is caught up.
            let h = VoteHold::load(&store, false).expect("load");
            assert!(h.holding() && !h.may_vote(Some(41)));
            assert!(h.applied(40));
            store.durable_flush().expect("flush");
        }
        let store = Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("open");
        assert!(!VoteHold::load(&store, false).expect("load").holding());
        assert!(!VoteHold::load(&store, false).expect("load").holding());
    }
}
