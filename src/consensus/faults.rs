//! Fault injection on the peer transport, as a tower layer around each peer channel.
//!
//! Every outgoing peer RPC passes through [`FaultService`], which asks the member's [`Faults`]
//! whether the link `from → to` is cut, lossy or slow. A production member's controller is
//! empty, so the check is one uncontended lock and nothing else; tests drive the controller
//! to partition, isolate, drop and delay (as TiKV's transport filters do).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::Channel;
use tower::Service;

/// What happens to one RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Delivered normally.
    None,
    /// Not delivered: the caller sees the peer as unreachable.
    Drop,
    /// Delivered after a delay.
    Delay(Duration),
}

#[derive(Default)]
struct Inner {
    /// Directed links that are cut.
    blocked: HashSet<(u64, u64)>,
    /// Probability of dropping any RPC.
    drop_rate: f64,
    /// Delay range applied to every RPC.
    delay: Option<(Duration, Duration)>,
    rng: Option<StdRng>,
    /// RPCs dropped so far.
    dropped: u64,
}

/// The fault controller of one member's outgoing peer links.
#[derive(Default)]
pub struct Faults {
    inner: Mutex<Inner>,
}

impl Faults {
    /// No faults; `seed` makes drop/delay decisions reproducible.
    pub fn new(seed: u64) -> Arc<Faults> {
        Arc::new(Faults {
            inner: Mutex::new(Inner {
                rng: Some(StdRng::seed_from_u64(seed)),
                ..Inner::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the links `from → to` for every `to` in `targets`.
    pub fn block(&self, from: u64, targets: impl IntoIterator<Item = u64>) {
        let mut g = self.lock();
        for t in targets {
            g.blocked.insert((from, t));
        }
    }

    /// Restores every link and removes drop and delay rules.
    pub fn heal(&self) {
        let mut g = self.lock();
        g.blocked.clear();
        g.drop_rate = 0.0;
        g.delay = None;
    }

    /// Drops each RPC with probability `rate` (0.0–1.0).
    pub fn set_drop_rate(&self, rate: f64) {
        self.lock().drop_rate = rate.clamp(0.0, 1.0);
    }

    /// Delays each RPC by a uniform time in `[min, max]`.
    pub fn set_delay(&self, min: Duration, max: Duration) {
        self.lock().delay = Some((min, max.max(min)));
    }

    /// RPCs dropped so far (blocked links and random drops).
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Decides the fate of one RPC on `from → to`.
    pub fn check(&self, from: u64, to: u64) -> Fault {
        let mut g = self.lock();
        if g.blocked.is_empty() && g.drop_rate == 0.0 && g.delay.is_none() {
            return Fault::None;
        }
        if g.blocked.contains(&(from, to)) {
            g.dropped += 1;
            return Fault::Drop;
        }
        let drop_rate = g.drop_rate;
        let delay = g.delay;
        let rng = g.rng.get_or_insert_with(|| StdRng::seed_from_u64(0));
        if drop_rate > 0.0 && rng.gen_bool(drop_rate) {
            g.dropped += 1;
            return Fault::Drop;
        }
        match delay {
            Some((min, max)) if max > Duration::ZERO => {
                let ms = rng.gen_range(min.as_micros()..=max.as_micros()) as u64;
                Fault::Delay(Duration::from_micros(ms))
            }
            _ => Fault::None,
        }
    }
}

/// The error a dropped RPC fails with.
#[derive(Debug, thiserror::Error)]
#[error("link {from} -> {to} is cut by fault injection")]
pub struct LinkCut {
    /// Sender.
    pub from: u64,
    /// Receiver.
    pub to: u64,
}

/// A peer channel wrapped with fault injection.
#[derive(Clone)]
pub struct FaultService {
    inner: Channel,
    from: u64,
    to: u64,
    faults: Arc<Faults>,
}

impl FaultService {
    /// Wraps `inner`, the channel from member `from` to member `to`.
    pub fn new(inner: Channel, from: u64, to: u64, faults: Arc<Faults>) -> Self {
        FaultService {
            inner,
            from,
            to,
            faults,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<http::Request<Body>> for FaultService {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let fault = self.faults.check(self.from, self.to);
        // The ready clone must be the one called (tower's contract); keep a fresh clone here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (from, to) = (self.from, self.to);
        Box::pin(async move {
            match fault {
                Fault::Drop => return Err(Box::new(LinkCut { from, to }) as BoxError),
                Fault::Delay(d) => tokio::time::sleep(d).await,
                Fault::None => {}
            }
            inner.call(req).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_links_drop_and_heal_restores() {
        let f = Faults::new(1);
        assert_eq!(f.check(1, 2), Fault::None);
        f.block(1, [2, 3]);
        assert_eq!(f.check(1, 2), Fault::Drop);
        assert_eq!(f.check(2, 1), Fault::None, "links are directed");
        assert_eq!(f.dropped(), 1);
        f.heal();
        assert_eq!(f.check(1, 2), Fault::None);
    }

    #[test]
    fn drop_rate_and_delay_are_applied() {
        let f = Faults::new(7);
        f.set_drop_rate(1.0);
        assert_eq!(f.check(1, 2), Fault::Drop);
        f.set_drop_rate(0.0);
        f.set_delay(Duration::from_millis(5), Duration::from_millis(10));
        match f.check(1, 2) {
            Fault::Delay(d) => {
                assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(10))
            }
            other => panic!("expected a delay, got {other:?}"),
        }
    }
}
