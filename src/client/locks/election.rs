//! Leader elections: [`Leadership`], a won election, and the election calls of [`Client`]:
//! campaign and wait to lead, proclaim a new value, ask for the current leader, resign.

use std::time::Duration;

use super::contender::Queue;
use super::options::wait_ms;
use super::registry::Registry;
use super::stubs::elections;
use super::LeaderResponse;
use crate::client::{Client, ClientError, Retry, Session};
use crate::proto::v1::{self as pb};

/// A won election: this candidate leads with `term`, a fencing token for
/// [`MultiOps::check_fence`]. Leadership lasts until [`Client::resign`] or the end of the
/// session; dropping this value does not resign.
///
/// [`MultiOps::check_fence`]: crate::client::MultiOps::check_fence
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The election path.
    pub path: String,
    /// The leader's candidate node.
    pub leader_node: String,
    /// The term: strictly increasing across the leaders of this election.
    pub term: u64,
    /// The owning session's id.
    pub session_id: u64,
}

impl Client {
    /// Joins the election at `path` as a candidate of `session` with `value` (published
    /// while it leads, e.g. its address) and waits until it leads, or `wait` passes (`None`
    /// = the server's maximum, [`MAX_LOCK_WAIT`]).
    ///
    /// # Errors
    /// `DEADLINE_EXCEEDED` if it does not lead within the wait (the candidacy is withdrawn);
    /// `SESSION_EXPIRED`; `INVALID_PATH`, `BAD_ARGUMENTS`, `NO_AUTH`, `TOO_LARGE`; transport
    /// errors.
    ///
    /// [`MAX_LOCK_WAIT`]: super::MAX_LOCK_WAIT
    pub async fn campaign(
        &self,
        path: &str,
        session: &Session,
        value: impl Into<Vec<u8>>,
        wait: Option<Duration>,
    ) -> Result<Leadership, ClientError> {
        let req = pb::CampaignRequest {
            path: path.to_string(),
            session_id: session.id(),
            value: value.into(),
            wait_timeout_ms: wait.map_or(0, wait_ms),
        };
        let (leader_node, term) = self
            .enqueue(path, session.id(), Queue::Campaign, req)
            .await
            .inspect_err(|e| session.note_error(e))?;
        Ok(Leadership {
            path: path.to_string(),
            leader_node,
            term,
            session_id: session.id(),
        })
    }

    /// Replaces the leader's value, only while `leadership` still leads.
    ///
    /// # Errors
    /// `BAD_FENCE` (code `FAILED_PRECONDITION`) if it no longer leads with that term;
    /// `TOO_LARGE`, `INVALID_PATH`, transport errors.
    pub async fn proclaim(
        &self,
        leadership: &Leadership,
        value: impl Into<Vec<u8>>,
    ) -> Result<pb::ResponseHeader, ClientError> {
        let req = pb::ProclaimRequest {
            leader_node: leadership.leader_node.clone(),
            term: leadership.term,
            value: value.into(),
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::IfNotApplied, req, move |ch, r| async move {
                elections(ch, max).proclaim(r).await
            })
            .await?;
        Ok(resp.header.unwrap_or_default())
    }

    /// The current leader of the election at `path` (linearizable); `has_leader` is false
    /// if there is none.
    ///
    /// # Errors
    /// `INVALID_PATH`, transport errors.
    pub async fn leader(&self, path: &str) -> Result<LeaderResponse, ClientError> {
        let req = pb::LeaderRequest {
            path: path.to_string(),
        };
        let max = self.max_message_size();
        self.unary(Retry::Idempotent, req, move |ch, r| async move {
            elections(ch, max).leader(r).await
        })
        .await
    }

    /// Gives up leadership (or a candidacy): deletes the candidate node.
    ///
    /// # Errors
    /// `NO_NODE` if it is already gone (the session ended), `NOT_OWNER`, transport errors.
    pub async fn resign(&self, leadership: &Leadership) -> Result<pb::ResponseHeader, ClientError> {
        Registry::global().forget(
            leadership.session_id,
            &leadership.path,
            &leadership.leader_node,
        );
        self.delete_contender(&leadership.leader_node, leadership.session_id, true)
            .await
    }
}
