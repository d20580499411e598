//! The client-facing gRPC services, one file per service. Each handler validates its input,
//! calls the core (proposer for writes, read barrier + local state for reads) and maps
//! domain errors to statuses in one place (`BatonError::to_status`).

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::BatonError;
use crate::member::{Consistency, Member};
use crate::proto::v1;
use crate::tree::acl::{self, Caller};
use crate::tree::path::{self, PathLimits};
use crate::tree::{Request, RequestId, RequestResult, State, Zxid};

pub mod auth;
pub mod cluster;
pub mod elections;
pub mod locks;
pub mod maintenance;
pub mod sessions;
pub mod watches;
pub mod znodes;

/// Request metadata naming the client that numbers its writes (a decimal u64, not 0); with
/// [`SEQ_HEADER`] it makes a write apply at most once (see [`crate::tree::clients`]).
pub const CLIENT_ID_HEADER: &str = "baton-client-id";
/// Request metadata: the write's sequence number among the client's writes (decimal, ≥ 1).
pub const SEQ_HEADER: &str = "baton-seq";
/// Request metadata: the client's lowest sequence number still awaiting an answer (decimal,
/// at most the write's own; absent = the write's own, i.e. every earlier one was answered).
pub const FIRST_INCOMPLETE_HEADER: &str = "baton-first-incomplete";

/// The request id a write's metadata carries, if any.
///
/// # Errors
/// `BAD_ARGUMENTS` for a client id without a sequence number (or the other way round), a
/// value that is not a decimal u64, client id 0, sequence 0, or a first incomplete sequence
/// above the write's own.
pub fn request_id(md: &tonic::metadata::MetadataMap) -> Result<Option<RequestId>, BatonError> {
    let get = |key: &str| -> Result<Option<u64>, BatonError> {
        let Some(v) = md.get(key) else {
            return Ok(None);
        };
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                BatonError::BadArguments(format!("metadata {key} must be a decimal u64"))
            })
    };
    let (client_id, seq, first) = (
        get(CLIENT_ID_HEADER)?,
        get(SEQ_HEADER)?,
        get(FIRST_INCOMPLETE_HEADER)?,
    );
    let (client_id, seq) = match (client_id, seq) {
        (None, None) if first.is_none() => return Ok(None),
        (Some(c), Some(s)) => (c, s),
        _ => {
            return Err(BatonError::BadArguments(format!(
                "a request id needs both {CLIENT_ID_HEADER} and {SEQ_HEADER}"
            )))
        }
    };
    if client_id == 0 || seq == 0 {
        return Err(BatonError::BadArguments(format!(
            "{CLIENT_ID_HEADER} and {SEQ_HEADER} must not be 0"
        )));
    }
    let first_incomplete = first.unwrap_or(seq);
    if first_incomplete > seq {
        return Err(BatonError::BadArguments(format!(
            "{FIRST_INCOMPLETE_HEADER} ({first_incomplete}) is above {SEQ_HEADER} ({seq})"
        )));
    }
    Ok(Some(RequestId {
        client_id,
        seq,
        first_incomplete,
    }))
}

/// The request id of a write by `caller`: [`request_id`], with the client id bound to the
/// caller's ids, so that a caller who learns or guesses another's client id cannot read its
/// remembered results or make its writes stale. Every member derives the same id from the
/// same credentials; anonymous callers keep the id they sent.
///
/// # Errors
/// As [`request_id`].
pub fn own_request_id(
    md: &tonic::metadata::MetadataMap,
    caller: &Caller,
) -> Result<Option<RequestId>, BatonError> {
    Ok(request_id(md)?.map(|mut id| {
        id.client_id = bound_client_id(id.client_id, caller);
        id
    }))
}

/// `client_id` mixed with the caller's ids (SHA-1 over both, first 8 bytes); unchanged for
/// an anonymous caller. Never 0.
fn bound_client_id(client_id: u64, caller: &Caller) -> u64 {
    use sha1::{Digest as _, Sha1};
    if caller.ids.is_empty() {
        return client_id;
    }
    let mut h = Sha1::new();
    h.update(client_id.to_le_bytes());
    for id in &caller.ids {
        h.update(id.scheme.as_bytes());
        h.update([0]);
        h.update(id.id.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first).max(1)
}

/// What every client service needs: the member, the parked lock and election waiters, and
/// the authenticator. Services reach the core only through [`Member`]'s operations; the
/// checks every handler makes on its input (paths, sizes, ACLs) live here.
pub struct Ctx {
    member: Arc<Member>,
    lock_waiters: Arc<locks::LockWaiters>,
    auth: Arc<Authenticator>,
}

impl Ctx {
    /// The services' context over `member`.
    pub fn new(
        member: Arc<Member>,
        lock_waiters: Arc<locks::LockWaiters>,
        auth: Arc<Authenticator>,
    ) -> Ctx {
        Ctx {
            member,
            lock_waiters,
            auth,
        }
    }

    /// The member the services run on.
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }

    /// The member's configuration.
    pub fn config(&self) -> &Config {
        self.member.config()
    }

    /// Parked lock and election waiters.
    pub fn lock_waiters(&self) -> &Arc<locks::LockWaiters> {
        &self.lock_waiters
    }

    /// Who callers are, and the method gate.
    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// Path bounds from the configuration.
    pub fn path_limits(&self) -> PathLimits {
        let cfg = self.config();
        PathLimits {
            max_len: cfg.max_path_bytes,
            max_depth: cfg.max_path_depth,
        }
    }

    /// The response header, with `zxid` given.
    pub fn header_at(&self, zxid: Zxid) -> Option<v1::ResponseHeader> {
        let p = self.member.position();
        Some(v1::ResponseHeader {
            member_id: p.member_id,
            leader_id: p.leader_id,
            term: p.term,
            zxid,
        })
    }

    /// Runs `f` on the tree under the read lock.
    pub fn read_tree<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.member.read_tree(f)
    }

    /// Waits as the read's consistency (a `v1::Consistency` number) requires, then until
    /// `min_zxid` is applied (see [`Member::ready_to_read`]).
    ///
    /// # Errors
    /// `BAD_ARGUMENTS` for an unknown consistency; `UNAVAILABLE` without quorum;
    /// `DEADLINE_EXCEEDED` if `min_zxid` is not reached.
    pub async fn before_read(&self, consistency: i32, min_zxid: u64) -> Result<(), BatonError> {
        let consistency = match v1::Consistency::try_from(consistency) {
            Ok(v1::Consistency::Linearizable) => Consistency::Linearizable,
            Ok(v1::Consistency::Serializable) => Consistency::Serializable,
            Err(_) => {
                return Err(BatonError::BadArguments(format!(
                    "unknown consistency {consistency}"
                )))
            }
        };
        self.member.ready_to_read(consistency, min_zxid).await?;
        Ok(())
    }

    /// Checks a path for reading.
    ///
    /// # Errors
    /// `INVALID_PATH`.
    pub fn check_path(&self, p: &str) -> Result<(), BatonError> {
        crate::ops::grpc::note_path(p);
        path::validate(p, false, &self.path_limits())
    }

    /// Checks a path for writing: valid, and outside the reserved subtree.
    ///
    /// # Errors
    /// `INVALID_PATH`, or `NO_AUTH` under `/baton`.
    pub fn check_write_path(&self, p: &str, sequential: bool) -> Result<(), BatonError> {
        crate::ops::grpc::note_path(p);
        path::validate(p, sequential, &self.path_limits())?;
        if path::is_reserved(p) {
            return Err(BatonError::NoAuth {
                path: p.to_string(),
                need: "SYSTEM",
            });
        }
        Ok(())
    }

    /// Checks `perm` on the node at `p` for `caller`; a missing node passes (the operation
    /// then reports it, or applies its own check).
    ///
    /// # Errors
    /// `NO_AUTH`.
    pub fn authorize(&self, p: &str, caller: &Caller, perm: u32) -> Result<(), BatonError> {
        self.read_tree(|s| match s.get(p) {
            Some(n) => acl::require(n.acl.as_slice(), caller, perm, p),
            None => Ok(()),
        })
    }

    /// Checks a data size against the limit.
    ///
    /// # Errors
    /// `TOO_LARGE` naming the limit.
    pub fn check_data(&self, data: &[u8]) -> Result<(), BatonError> {
        let limit = self.config().max_data_bytes;
        if data.len() > limit {
            return Err(BatonError::TooLarge {
                what: "data",
                size: data.len() as u64,
                limit: limit as u64,
            });
        }
        Ok(())
    }

    /// Proposes a request and waits for its result.
    ///
    /// # Errors
    /// As [`Member::write`].
    pub async fn write(&self, req: Request) -> Result<(RequestResult, Zxid), BatonError> {
        self.member.write(req, None).await
    }

    /// Proposes a client write with its request id (if it has one) and waits for its result:
    /// a copy of a write already applied gets that write's result and zxid.
    ///
    /// # Errors
    /// As [`Member::write`].
    pub async fn write_once(
        &self,
        req: Request,
        id: Option<RequestId>,
    ) -> Result<(RequestResult, Zxid), BatonError> {
        self.member.write(req, id).await
    }
}
