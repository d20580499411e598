//! The vote hold of a member that starts with nothing: a new member, or one whose data
//! directory was lost or wiped and that comes back under its old id.
//!
//! Such a member has forgotten its vote and its log, and Raft's safety rests on both: it
//! could vote twice in one term, and, worse, it may have been one of the majority that held
//! an acknowledged write. Voting with an empty log, it could help elect a member that lacks
//! that write, which would then be lost.
//!
//! So a member that starts pristine (no log, no vote, nothing applied) in a cluster it did
//! not found records a **hold** before it serves any peer request. The first leader that
//! contacts it tells it its commit (term and index), and a leader of a later term raises that
//! target once it has committed an entry of its own term; until the member has applied up
//! to the target index (by log or by snapshot), it
//! - votes only for a candidate whose log reaches that commit (by Raft's log matching, such a
//!   log holds every entry committed by then, so electing it loses nothing); before any
//!   contact, only for a new cluster's first candidate, whose log ends at index 0 (nothing
//!   can have been acknowledged yet; without this a new cluster could not elect its first
//!   leader); and
//! - does not stand for election.
//!
//! Then it votes like any other member. The hold is kept in `raft_meta`, so a restart
//! during the catch-up keeps it.
//!
//! A cluster that has lost its other members meanwhile cannot elect a leader with the help
//! of a held member: it waits for a member that has the data, which is the point.

use std::sync::{Arc, Mutex, PoisonError};

use crate::store::{Store, StoreError};

/// Key in `raft_meta` of the hold: the term and index (8 bytes each, big-endian) of the
/// commit it waits for, all ones until a leader made contact; absent when there is none.
pub const VOTE_HOLD_KEY: &[u8] = b"baton_vote_hold";

/// Where a held member stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// Votes like any member.
    Off,
    /// No leader has made contact yet.
    UntilContact,
    /// Held until this log id (term, index), the leader's commit at first contact, is
    /// applied.
    Until(u64, u64),
}

impl Hold {
    fn encode(self) -> Option<[u8; 16]> {
        let (t, i) = match self {
            Hold::Off => return None,
            Hold::UntilContact => (u64::MAX, u64::MAX),
            Hold::Until(t, i) => (t, i),
        };
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&t.to_be_bytes());
        b[8..].copy_from_slice(&i.to_be_bytes());
        Some(b)
    }

    fn decode(v: &[u8]) -> Option<Hold> {
        let b: [u8; 16] = v.try_into().ok()?;
        let t = u64::from_be_bytes(b[..8].try_into().ok()?);
        let i = u64::from_be_bytes(b[8..].try_into().ok()?);
        Some(if (t, i) == (u64::MAX, u64::MAX) {
            Hold::UntilContact
        } else {
            Hold::Until(t, i)
        })
    }
}

/// The hold of one member (see the module docs).
pub struct VoteHold {
    hold: Mutex<Hold>,
    store: Option<Store>,
}

impl VoteHold {
    /// Loads the recorded hold, and records a new one when the member starts `pristine`
    /// (nothing logged, voted or applied) without founding the cluster. Blocking.
    ///
    /// # Errors
    /// Storage errors reading or durably recording the hold; a record that is not one.
    pub fn load(store: &Store, pristine_joiner: bool) -> Result<Arc<VoteHold>, StoreError> {
        let recorded = match store.raft_meta().get(VOTE_HOLD_KEY)? {
            Some(v) => Hold::decode(&v).ok_or_else(|| {
                StoreError::Corrupt("the vote-hold record is not 16 bytes".into())
            })?,
            None => Hold::Off,
        };
        let hold = if recorded == Hold::Off && pristine_joiner {
            if let Some(b) = Hold::UntilContact.encode() {
                store.raft_meta().insert(VOTE_HOLD_KEY, &b)?;
            }
            store.durable_flush()?;
            Hold::UntilContact
        } else {
            recorded
        };
        if hold != Hold::Off {
            tracing::info!(
                "this member starts without data in an existing cluster: it will not vote for \
                 a member that may lack acknowledged writes, nor stand for election, until it \
                 has caught up with the leader"
            );
        }
        Ok(Arc::new(VoteHold {
            hold: Mutex::new(hold),
            store: Some(store.clone()),
        }))
    }

    /// A hold that is not recorded anywhere (tests and tools); `on` starts it until contact.
    pub fn detached(on: bool) -> Arc<VoteHold> {
        Arc::new(VoteHold {
            hold: Mutex::new(if on { Hold::UntilContact } else { Hold::Off }),
            store: None,
        })
    }

    fn get(&self) -> Hold {
        *self.hold.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the hold is on.
    pub fn holding(&self) -> bool {
        self.get() != Hold::Off
    }

    /// Whether a vote may be granted to a candidate whose log ends at `candidate_last`
    /// (term, index). Held before any contact: only a new cluster's first candidate (its log
    /// ends at index 0). Held after it: only a candidate whose log reaches the commit the
    /// leader reported, which by Raft's log matching holds every entry committed by then.
    pub fn may_vote(&self, candidate_last: Option<(u64, u64)>) -> bool {
        match self.get() {
            Hold::Off => true,
            Hold::UntilContact => candidate_last.is_none_or(|(_, i)| i == 0),
            Hold::Until(t, i) => candidate_last.is_some_and(|c| c >= (t, i)),
        }
    }

    /// A leader made contact, with its commit at `leader_commit` (term, index): the hold now
    /// ends once that index is applied. The first contact sets the target; a later contact
    /// raises it only when the commit is of a later term than the target's, i.e. a leader of
    /// a later term has committed an entry of its own. So a stale leader that made contact
    /// first, or a new leader whose commit still lagged, does not leave the target too low,
    /// while a steady leader's commit, which keeps moving, does not hold the member forever.
    pub fn contact(&self, leader_commit: Option<(u64, u64)>) {
        let target = {
            let mut h = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
            let (t, i) = leader_commit.unwrap_or((0, 0));
            match *h {
                Hold::UntilContact => {}
                Hold::Until(held_term, held_index) if t > held_term && i > held_index => {}
                _ => return,
            }
            *h = Hold::Until(t, i);
            *h
        };
        tracing::info!(
            ?target,
            "a leader made contact: votes are held until its commit is applied here"
        );
        self.record(target);
    }

    /// Ends the hold if `applied` reaches it; returns whether it ended now.
    pub fn applied(&self, applied: u64) -> bool {
        {
            let mut h = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
            match *h {
                Hold::Until(_, i) if applied >= i => *h = Hold::Off,
                _ => return false,
            }
        }
        tracing::info!(
            applied,
            "caught up with the leader: this member votes and stands for election again"
        );
        self.record(Hold::Off);
        true
    }

    /// Records the hold; not flushed: losing this write only keeps an earlier, stricter
    /// value (the start of a hold is flushed in [`VoteHold::load`]).
    fn record(&self, hold: Hold) {
        let Some(store) = &self.store else { return };
        let res = match hold.encode() {
            None => store.raft_meta().remove(VOTE_HOLD_KEY).map(|_| ()),
            Some(b) => store.raft_meta().insert(VOTE_HOLD_KEY, &b).map(|_| ()),
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
    fn a_held_member_votes_only_for_a_candidate_with_the_commit_until_it_has_caught_up() {
        let h = VoteHold::detached(true);
        assert!(h.holding());
        assert!(h.may_vote(None) && h.may_vote(Some((0, 0))));
        assert!(!h.may_vote(Some((1, 1))) && !h.may_vote(Some((3, 500))));
        assert!(!h.applied(1_000), "no contact yet: nothing ends the hold");
        h.contact(Some((2, 120)));
        h.contact(Some((2, 900))); // only the first contact counts
        assert!(
            !h.may_vote(Some((2, 119))),
            "a candidate without the commit"
        );
        assert!(!h.may_vote(Some((1, 500))), "an older term's longer log");
        assert!(h.may_vote(Some((2, 120))) && h.may_vote(Some((3, 5))));
        assert!(!h.applied(119));
        assert!(h.applied(120));
        assert!(!h.holding());
        assert!(h.may_vote(Some((1, 1))));
        assert!(!h.applied(121), "ended once");
    }

    #[test]
    fn a_leader_of_a_later_term_raises_a_target_a_stale_leader_set() {
        let h = VoteHold::detached(true);
        h.contact(Some((2, 50))); // a deposed leader reached the member first
        h.contact(Some((2, 70))); // the same term's commit moving on: target kept
        assert!(h.may_vote(Some((2, 60))));
        h.contact(Some((3, 400))); // the new leader committed in its own term
        assert!(
            !h.may_vote(Some((2, 60))) && !h.may_vote(Some((3, 399))),
            "the target was raised"
        );
        assert!(h.may_vote(Some((3, 400))));
        h.contact(Some((3, 900))); // its commit moving on: target kept
        assert!(!h.applied(399));
        assert!(
            h.applied(400),
            "the raised target, not a moving one, ends the hold"
        );
    }

    #[test]
    fn the_hold_is_recorded_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("open");
        {
            let store = open();
            let h = VoteHold::load(&store, true).expect("load");
            assert!(h.holding() && !h.may_vote(Some((1, 1))));
            store.durable_flush().expect("flush");
        }
        {
            let store = open();
            let h = VoteHold::load(&store, false).expect("load");
            assert!(
                h.holding() && !h.may_vote(Some((1, 1))),
                "still until contact"
            );
            h.contact(Some((1, 40)));
            store.durable_flush().expect("flush");
        }
        {
            let store = open();
            // Not pristine any more, but the recorded hold stays until it is caught up.
            let h = VoteHold::load(&store, false).expect("load");
            assert!(h.holding() && !h.may_vote(Some((1, 39))) && h.may_vote(Some((1, 40))));
            assert!(h.applied(40));
            store.durable_flush().expect("flush");
        }
        let store = open();
        assert!(!VoteHold::load(&store, false).expect("load").holding());
    }
}
