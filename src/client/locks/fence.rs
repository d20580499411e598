//! Fencing tokens: making a Multi conditional on a lock still being held
//! ([`MultiOps::check_fence`]) and asking whether it is ([`Client::validate_fence`]).

use super::stubs::locks;
use crate::client::{Client, ClientError, MultiOps, Retry};
use crate::proto::v1::{self as pb};

impl MultiOps {
    /// Fails the Multi with `BAD_FENCE` unless `lock_node` holds its lock now with fencing
    /// token `token` ([`LockGuard::lock_node`] and [`LockGuard::fencing_token`], or a
    /// [`Leadership`]'s `leader_node` and `term`).
    ///
    /// [`LockGuard::lock_node`]: super::LockGuard::lock_node
    /// [`LockGuard::fencing_token`]: super::LockGuard::fencing_token
    /// [`Leadership`]: super::Leadership
    pub fn check_fence(self, lock_node: &str, token: u64) -> Self {
        self.op(pb::Op {
            op: Some(pb::op::Op::CheckFence(pb::CheckFenceOp {
                lock_node: lock_node.to_string(),
                token,
            })),
        })
    }
}

impl Client {
    /// Whether `lock_node` holds its lock now with fencing token `token` (linearizable).
    ///
    /// # Errors
    /// `INVALID_PATH`, transport errors.
    pub async fn validate_fence(&self, lock_node: &str, token: u64) -> Result<bool, ClientError> {
        let req = pb::ValidateFenceRequest {
            lock_node: lock_node.to_string(),
            fencing_token: token,
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Idempotent, req, move |ch, r| async move {
                locks(ch, max).validate_fence(r).await
            })
            .await?;
        Ok(resp.valid)
    }
}

#[cfg(test)]
mod tests {
    use crate::client::MultiOps;
    use crate::proto::v1::{self as pb};

    #[test]
    fn check_fence_op() {
        let ops = MultiOps::new()
            .check_fence("/l/lock-0000000001", 99)
            .into_ops();
        assert!(matches!(&ops[0].op, Some(pb::op::Op::CheckFence(c))
            if c.lock_node == "/l/lock-0000000001" && c.token == 99));
    }
}
