//! Applying committed entries: the tree changes under its write lock, the records the batch
//! touched are written behind to sled in one batch with the applied meta, the batch's events
//! go to the watch hub, and the applied index is bumped.

use std::collections::BTreeSet;
use std::sync::PoisonError;

use openraft::{EntryPayload, ErrorVerb, StorageError};

use super::records;
use super::{poisoned, sm_err, StateMachineStore};
use crate::stages::Stage;
use crate::types::{CommandResult, Entry, StoredMembership};

impl StateMachineStore {
    /// Applies a batch of committed entries; see the module docs of [`super`].
    pub(super) async fn apply_entries<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<CommandResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.store.write_behind_wait().await;
        let shared = &self.shared;
        let started = std::time::Instant::now();
        let mut first_index = None;
        let mut results = Vec::new();
        let last_index = {
            let mut state = shared
                .tree
                .write()
                .map_err(|_| sm_err(ErrorVerb::Write)(poisoned()))?;
            let mut meta = shared.meta_read().clone();
            let mut events = Vec::new();
            let mut touched_nodes = BTreeSet::new();
            let mut touched_sessions = BTreeSet::new();
            let mut touched_clients = BTreeSet::new();
            for entry in entries {
                let log_id = entry.log_id;
                if first_index.is_none() {
                    first_index = Some(log_id.index);
                    shared.stages.applying(log_id.index);
                }
                match entry.payload {
                    EntryPayload::Normal(cmd) => {
                        let mut a = state.apply(log_id.index, &cmd);
                        results.push(a.results);
                        events.append(&mut a.events);
                        touched_nodes.append(&mut a.touched_nodes);
                        touched_sessions.append(&mut a.touched_sessions);
                        touched_clients.append(&mut a.touched_clients);
                    }
                    EntryPayload::Blank => {
                        state.applied_index = log_id.index;
                        results.push(Vec::new());
                    }
                    EntryPayload::Membership(m) => {
                        state.applied_index = log_id.index;
                        meta.membership = StoredMembership::new(Some(log_id), m);
                        results.push(Vec::new());
                    }
                }
                meta.last_applied = Some(log_id);
            }
            let Some(last) = meta.last_applied.filter(|_| !results.is_empty()) else {
                return Ok(results);
            };

            let membership_changed = meta.membership != shared.meta_read().membership;
            let mut changes = records::changes(
                &state,
                &meta,
                records::Touched {
                    nodes: &touched_nodes,
                    sessions: &touched_sessions,
                    clients: &touched_clients,
                    membership: membership_changed,
                },
            );
            // Written behind: the in-memory tree is what reads use; sled catches up on the
            // writer thread, each batch with its applied index (so sled always holds the state
            // after some whole batch), and before any purge or snapshot install it has caught
            // up and been flushed (see `Store::durable_flush`).
            self.events.record(&events, &mut changes);
            self.store.write_behind(&self.sm, changes);
            *shared.meta.write().unwrap_or_else(PoisonError::into_inner) = meta;
            shared.hub.publish(&events);
            last.index
        };
        shared.applied.send_replace(last_index);
        shared.stages.since(Stage::Apply, started);
        shared
            .stages
            .count(Stage::ApplyEntries, results.len() as u64);
        shared.stages.applied(last_index);
        Ok(results)
    }
}
