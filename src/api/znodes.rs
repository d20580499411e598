//! `baton.v1.ZNodes`: create, read, update, delete, multi, sync.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Ctx;
use crate::error::BatonError;
use crate::proto::client::{acl_from_wire, acl_to_wire, create_mode, op_error, outcome_to_wire};
use crate::proto::v1::{self, z_nodes_server::ZNodes};
use crate::tree::acl::{self, Caller};
use crate::tree::path;
use crate::tree::{self as t, OpOutcome, RequestResult};

/// The ZNodes service.
pub struct ZNodesService {
    ctx: Arc<Ctx>,
}

impl ZNodesService {
    /// A service over the member's core.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        ZNodesService { ctx }
    }

    fn create_op(&self, r: v1::CreateRequest, caller: &Caller) -> Result<t::Op, BatonError> {
        let mode = create_mode(r.mode)?;
        self.ctx.check_write_path(&r.path, mode.is_sequential())?;
        self.ctx.check_data(&r.data)?;
        if mode.is_ephemeral() && r.session_id == 0 {
            return Err(BatonError::BadArguments(
                "ephemeral nodes need a session_id".into(),
            ));
        }
        if mode.is_ttl() {
            if !(1..t::state::MAX_TTL_MS).contains(&r.ttl_ms) {
                return Err(BatonError::BadArguments(format!(
                    "ttl_ms must be in [1, 2^40) for TTL nodes, got {}",
                    r.ttl_ms
                )));
            }
        } else if r.ttl_ms != 0 {
            return Err(BatonError::BadArguments(
                "ttl_ms is only valid with a TTL create mode".into(),
            ));
        }
        let acl = if r.acl.is_empty() {
            Vec::new()
        } else {
            acl::canonical(&acl_from_wire(r.acl), caller)?
        };
        Ok(t::Op::Create {
            path: r.path,
            data: r.data.into(),
            mode,
            session_id: if mode.is_ephemeral() { r.session_id } else { 0 },
            ttl_ms: r.ttl_ms,
            acl,
        })
    }

    fn delete_op(&self, r: v1::DeleteRequest) -> Result<t::Op, BatonError> {
        self.ctx.check_write_path(&r.path, false)?;
        if r.path == "/" {
            return Err(BatonError::BadArguments(
                "the root cannot be deleted".into(),
            ));
        }
        check_version(r.version)?;
        Ok(t::Op::Delete {
            path: r.path,
            version: r.version,
        })
    }

    fn set_op(&self, r: v1::SetDataRequest) -> Result<t::Op, BatonError> {
        self.ctx.check_write_path(&r.path, false)?;
        self.ctx.check_data(&r.data)?;
        check_version(r.version)?;
        Ok(t::Op::SetData {
            path: r.path,
            data: r.data.into(),
            version: r.version,
        })
    }

    fn check_op(&self, r: v1::CheckOp) -> Result<t::Op, BatonError> {
        self.ctx.check_path(&r.path)?;
        check_version(r.version)?;
        Ok(t::Op::Check {
            path: r.path,
            version: r.version,
        })
    }

    /// Proposes one op for `caller` (with the request's id, if it carries one) and returns
    /// its outcome.
    async fn single(
        &self,
        op: t::Op,
        caller: Caller,
        id: Option<t::RequestId>,
    ) -> Result<(OpOutcome, u64), Status> {
        let (result, zxid) = self
            .ctx
            .write_once(
                t::Request::Multi {
                    ops: vec![op],
                    single: true,
                    caller: Some(caller),
                },
                id,
            )
            .await?;
        match result {
            RequestResult::Multi(Ok(mut outs)) if outs.len() == 1 => Ok((outs.remove(0), zxid)),
            RequestResult::Multi(Err(f)) => Err(f.error.to_status()),
            other => Err(BatonError::Internal(format!("unexpected result {other:?}")).to_status()),
        }
    }
}

fn check_version(v: i32) -> Result<(), BatonError> {
    if v < -1 {
        return Err(BatonError::BadArguments(format!(
            "version must be -1 (any) or >= 0, got {v}"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl ZNodes for ZNodesService {
    async fn create(
        &self,
        req: Request<v1::CreateRequest>,
    ) -> Result<Response<v1::CreateResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let id = super::own_request_id(req.metadata(), &caller)?;
        let op = self.create_op(req.into_inner(), &caller)?;
        match self.single(op, caller, id).await? {
            (OpOutcome::Create { path, stat }, zxid) => Ok(Response::new(v1::CreateResponse {
                header: self.ctx.header_at(zxid),
                path,
                stat: Some((&stat).into()),
            })),
            _ => Err(Status::internal("unexpected create outcome")),
        }
    }

    async fn delete(
        &self,
        req: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::DeleteResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let id = super::own_request_id(req.metadata(), &caller)?;
        let op = self.delete_op(req.into_inner())?;
        let (_, zxid) = self.single(op, caller, id).await?;
        Ok(Response::new(v1::DeleteResponse {
            header: self.ctx.header_at(zxid),
        }))
    }

    async fn exists(
        &self,
        req: Request<v1::ExistsRequest>,
    ) -> Result<Response<v1::ExistsResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        self.ctx.check_path(&r.path)?;
        self.ctx.before_read(r.consistency, r.min_zxid).await?;
        // As ZooKeeper: `exists` on an existing node needs READ; on a missing one, nothing.
        let (stat, zxid) = self.ctx.read_tree(|s| {
            let stat = match s.get(&r.path) {
                Some(n) => {
                    acl::require(n.acl.as_slice(), &caller, acl::READ, &r.path)?;
                    Some((&n.stat).into())
                }
                None => None,
            };
            Ok::<_, BatonError>((stat, s.applied_index))
        })?;
        Ok(Response::new(v1::ExistsResponse {
            header: self.ctx.header_at(zxid),
            exists: stat.is_some(),
            stat,
        }))
    }

    async fn get_data(
        &self,
        req: Request<v1::GetDataRequest>,
    ) -> Result<Response<v1::GetDataResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        self.ctx.check_path(&r.path)?;
        self.ctx.before_read(r.consistency, r.min_zxid).await?;
        let (data, stat, zxid) = self.ctx.read_tree(|s| {
            let n = s
                .get(&r.path)
                .ok_or_else(|| BatonError::NoNode(r.path.clone()))?;
            acl::require(n.acl.as_slice(), &caller, acl::READ, &r.path)?;
            Ok::<_, BatonError>((n.data.to_vec(), (&n.stat).into(), s.applied_index))
        })?;
        Ok(Response::new(v1::GetDataResponse {
            header: self.ctx.header_at(zxid),
            data,
            stat: Some(stat),
        }))
    }

    async fn set_data(
        &self,
        req: Request<v1::SetDataRequest>,
    ) -> Result<Response<v1::SetDataResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let id = super::own_request_id(req.metadata(), &caller)?;
        let op = self.set_op(req.into_inner())?;
        match self.single(op, caller, id).await? {
            (OpOutcome::SetData { stat }, zxid) => Ok(Response::new(v1::SetDataResponse {
                header: self.ctx.header_at(zxid),
                stat: Some((&stat).into()),
            })),
            _ => Err(Status::internal("unexpected set_data outcome")),
        }
    }

    async fn get_children(
        &self,
        req: Request<v1::GetChildrenRequest>,
    ) -> Result<Response<v1::GetChildrenResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        self.ctx.check_path(&r.path)?;
        self.ctx.before_read(r.consistency, r.min_zxid).await?;
        let max = self.ctx.config().max_children_page;
        let limit = if r.limit == 0 {
            max
        } else {
            (r.limit as usize).min(max)
        };
        let out = self.ctx.read_tree(|s| {
            let Some(node) = s.get(&r.path) else {
                return Err(BatonError::NoNode(r.path.clone()));
            };
            acl::require(node.acl.as_slice(), &caller, acl::READ, &r.path)?;
            let Some((page, more)) = s.children_page(&r.path, &r.start_after, limit) else {
                return Err(BatonError::NoNode(r.path.clone()));
            };
            // Names need READ on the parent (as in ZooKeeper); each child's Stat is the child's
            // own metadata and needs READ on the child.
            let stats: Vec<v1::Stat> = if r.include_stats {
                let mut stats = Vec::with_capacity(page.len());
                for name in &page {
                    let child = path::join(&r.path, name);
                    if let Some(n) = s.get(&child) {
                        acl::require(n.acl.as_slice(), &caller, acl::READ, &child)?;
                        stats.push((&n.stat).into());
                    }
                }
                stats
            } else {
                Vec::new()
            };
            let next = if more {
                page.last().map(|n| (*n).clone()).unwrap_or_default()
            } else {
                String::new()
            };
            Ok(v1::GetChildrenResponse {
                header: self.ctx.header_at(s.applied_index),
                children: page.into_iter().cloned().collect(),
                stats,
                stat: Some((&node.stat).into()),
                next,
            })
        });
        Ok(Response::new(out?))
    }

    async fn multi(
        &self,
        req: Request<v1::MultiRequest>,
    ) -> Result<Response<v1::MultiResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let id = super::own_request_id(req.metadata(), &caller)?;
        let r = req.into_inner();
        if r.ops.len() > self.ctx.config().max_multi_ops {
            return Err(BatonError::TooLarge {
                what: "multi op count",
                size: r.ops.len() as u64,
                limit: self.ctx.config().max_multi_ops as u64,
            }
            .to_status());
        }
        let mut ops = Vec::with_capacity(r.ops.len());
        let mut total = 0usize;
        for (i, op) in r.ops.into_iter().enumerate() {
            let converted = match op.op {
                Some(v1::op::Op::Check(c)) => self.check_op(c),
                Some(v1::op::Op::Create(c)) => self.create_op(c, &caller),
                Some(v1::op::Op::Delete(d)) => self.delete_op(d),
                Some(v1::op::Op::SetData(s)) => self.set_op(s),
                Some(v1::op::Op::CheckFence(f)) => {
                    self.ctx
                        .check_path(&f.lock_node)
                        .map(|()| t::Op::CheckFence {
                            lock_node: f.lock_node,
                            token: f.token,
                        })
                }
                None => Err(BatonError::BadArguments(format!("op {i} is empty"))),
            };
            let op = converted.map_err(|e| {
                e.to_status_with(HashMap::from([("op_index".to_string(), i.to_string())]))
            })?;
            total += op.size();
            ops.push(op);
        }
        let limit = self.ctx.config().max_data_bytes.max(1024 * 1024) * 2;
        if total > limit {
            return Err(BatonError::TooLarge {
                what: "multi payload",
                size: total as u64,
                limit: limit as u64,
            }
            .to_status());
        }
        let n = ops.len();
        let (result, zxid) = self
            .ctx
            .write_once(
                t::Request::Multi {
                    ops,
                    single: false,
                    caller: Some(caller),
                },
                id,
            )
            .await?;
        let header = self.ctx.header_at(zxid);
        let resp = match result {
            RequestResult::Multi(Ok(outs)) => v1::MultiResponse {
                header,
                succeeded: true,
                results: outs.iter().map(|o| outcome_to_wire(o, header)).collect(),
                failed_op_index: 0,
            },
            RequestResult::Multi(Err(f)) => {
                let mut results: Vec<v1::OpResult> =
                    f.before.iter().map(|o| outcome_to_wire(o, None)).collect();
                results.push(v1::OpResult {
                    result: Some(v1::op_result::Result::Error(op_error(&f.error))),
                });
                while results.len() < n {
                    results.push(v1::OpResult {
                        result: Some(v1::op_result::Result::Error(op_error(
                            &BatonError::RuntimeInconsistency,
                        ))),
                    });
                }
                v1::MultiResponse {
                    header: self.ctx.header_at(self.ctx.member().applied()),
                    succeeded: false,
                    results,
                    failed_op_index: f.index as u32,
                }
            }
            other => {
                return Err(BatonError::Internal(format!("unexpected result {other:?}")).to_status())
            }
        };
        Ok(Response::new(resp))
    }

    async fn get_acl(
        &self,
        req: Request<v1::GetAclRequest>,
    ) -> Result<Response<v1::GetAclResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        self.ctx.check_path(&r.path)?;
        self.ctx.before_read(r.consistency, r.min_zxid).await?;
        let resp = self.ctx.read_tree(|s| {
            let n = s
                .get(&r.path)
                .ok_or_else(|| BatonError::NoNode(r.path.clone()))?;
            let list = n.acl.as_slice();
            if !acl::allowed(list, &caller, acl::READ) {
                acl::require(list, &caller, acl::ADMIN, &r.path)?;
            }
            Ok::<_, BatonError>(v1::GetAclResponse {
                header: self.ctx.header_at(s.applied_index),
                acl: acl_to_wire(&acl::shown(list, &caller)),
                stat: Some((&n.stat).into()),
            })
        })?;
        Ok(Response::new(resp))
    }

    async fn set_acl(
        &self,
        req: Request<v1::SetAclRequest>,
    ) -> Result<Response<v1::SetAclResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let id = super::own_request_id(req.metadata(), &caller)?;
        let r = req.into_inner();
        self.ctx.check_write_path(&r.path, false)?;
        check_version(r.version)?;
        let list = acl::canonical(&acl_from_wire(r.acl), &caller)?;
        let op = t::Op::SetAcl {
            path: r.path,
            acl: list,
            version: r.version,
        };
        match self.single(op, caller, id).await? {
            (OpOutcome::SetAcl { stat }, zxid) => Ok(Response::new(v1::SetAclResponse {
                header: self.ctx.header_at(zxid),
                stat: Some((&stat).into()),
            })),
            _ => Err(Status::internal("unexpected set_acl outcome")),
        }
    }

    async fn sync(
        &self,
        req: Request<v1::SyncRequest>,
    ) -> Result<Response<v1::SyncResponse>, Status> {
        let r = req.into_inner();
        if !r.path.is_empty() {
            self.ctx.check_path(&r.path)?;
        }
        let zxid = self.ctx.member().linearizable().await?;
        Ok(Response::new(v1::SyncResponse {
            header: self.ctx.header_at(zxid),
        }))
    }
}
