//! One Baton member started in this process on 127.0.0.1:0 with [`Config::for_test`] (as
//! tweaked by the test), its own data directory and a client connected to it, ready once a
//! `sync` goes through; used by the single-member suites (`api`, `locks`). Dropping it asks the
//! server to shut down.

use std::time::{Duration, Instant};

use baton::client::{Client, Session};
use baton::config::Config;
use baton::server::{self, ServerHandle};

/// A running member, its client and its data directory.
pub struct Member {
    /// The server (taken by a test that stops it itself).
    pub handle: Option<ServerHandle>,
    /// A client connected to it.
    pub client: Client,
    /// Its data directory (kept across [`Member::restart`]).
    pub dir: Option<tempfile::TempDir>,
}

/// Starts a member on `dir` with the test configuration changed by `tweak`; waits until it
/// serves.
pub async fn start_with(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Member {
    let mut cfg = Config::for_test(dir.path());
    tweak(&mut cfg);
    let handle = server::start(cfg).await.expect("server starts");
    let client = Client::connect(&[handle.client_addr.to_string()])
        .await
        .expect("client connects");
    wait_ready(&client).await;
    Member {
        handle: Some(handle),
        client,
        dir: Some(dir),
    }
}

/// Starts a member with the test configuration on a new data directory.
pub async fn start() -> Member {
    start_with(tempfile::tempdir().expect("temp dir"), |_| {}).await
}

async fn wait_ready(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..1000 {
        if client.sync("/").await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "member did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("member did not become ready");
}

impl Member {
    /// Stops the member cleanly and starts it again on the same data directory.
    pub async fn restart(mut self) -> Member {
        if let Some(h) = self.handle.take() {
            h.stop().await.expect("clean stop");
        }
        let dir = self.dir.take().expect("member owns its dir");
        start_with(dir, |_| {}).await
    }

    /// The member's client endpoint.
    pub fn endpoint(&self) -> String {
        self.client.endpoints()[0].clone()
    }

    /// A session with a 10 s timeout.
    pub async fn session(&self) -> Session {
        self.client
            .open_session(Duration::from_secs(10))
            .await
            .expect("open session")
    }

    /// A session that expires `timeout` after its keepalives stop.
    pub async fn short_session(&self, timeout: Duration) -> Session {
        self.client
            .open_session(timeout)
            .await
            .expect("open session")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}
