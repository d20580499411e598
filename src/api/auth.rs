//! `baton.v1.Auth`: who the member takes the caller to be.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Ctx;
use crate::proto::v1::{self, auth_server::Auth};

/// The Auth service.
pub struct AuthService {
    ctx: Arc<Ctx>,
}

impl AuthService {
    /// A service over the member's core.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        AuthService { ctx }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn who_am_i(
        &self,
        req: Request<v1::WhoAmIRequest>,
    ) -> Result<Response<v1::WhoAmIResponse>, Status> {
        let caller = crate::auth::caller(&req);
        Ok(Response::new(v1::WhoAmIResponse {
            member_id: self.ctx.config().id,
            ids: caller.ids.iter().map(ToString::to_string).collect(),
            superuser: caller.superuser,
            secure: crate::auth::secure(&req),
        }))
    }
}
