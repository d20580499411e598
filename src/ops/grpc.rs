//! The client port's request layer: counts and times every RPC by method and status code,
//! bounds the requests in flight (refusing the excess at once with RESOURCE_EXHAUSTED /
//! OVERLOADED, which clients retry after a pause), and logs requests slower than the
//! threshold with the path they concerned (never their data).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::warn;

use super::metrics::{CodeLabels, Method, Metrics};
use crate::error::BatonError;
use crate::stages::Stages;

tokio::task_local! {
    static NOTE: RefCell<Option<String>>;
}

/// Notes the path the current request concerns, for the slow-request log. Outside a request
/// (tests calling handlers directly) it does nothing.
pub fn note_path(path: &str) {
    let _ = NOTE.try_with(|n| {
        let mut n = n.borrow_mut();
        if n.is_none() {
            *n = Some(path.to_string());
        }
    });
}

/// The layer, shared by every connection of the client port.
#[derive(Clone)]
pub struct RequestLayer {
    shared: Arc<Shared>,
}

struct Shared {
    metrics: Arc<Metrics>,
    /// Whether requests are counted and timed (off when the member serves no metrics).
    record: bool,
    stages: Arc<Stages>,
    in_flight: Arc<Semaphore>,
    limit: usize,
}

impl RequestLayer {
    /// A layer recording into `metrics`, logging slow requests with the thresholds and term
    /// of `stages`, and admitting at most `max_in_flight` short requests at a time (streams
    /// and waits such as a lock acquire are counted but not bounded here). With `record`
    /// off, requests are bounded and slow ones logged, but nothing is counted or timed.
    pub fn new(
        metrics: Arc<Metrics>,
        stages: Arc<Stages>,
        max_in_flight: usize,
        record: bool,
    ) -> Self {
        RequestLayer {
            shared: Arc::new(Shared {
                metrics,
                record,
                stages,
                in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
                limit: max_in_flight.max(1),
            }),
        }
    }
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The layer's service.
#[derive(Clone)]
pub struct RequestService<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> Service<http::Request<Body>> for RequestService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone is the one made ready by `poll_ready`; keep it and leave a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let method = shared.metrics.method(req.uri().path()).cloned();
        let Some(method) = method else {
            // Reflection and unknown paths: served, not measured.
            return Box::pin(inner.call(req));
        };
        if shared.record {
            shared.metrics.started.get_or_create(&method.labels).inc();
        }
        let permit = if method.long_lived {
            None
        } else {
            match shared.in_flight.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    shared.metrics.shed.inc();
                    let mut rec = Recorder::new(shared, method, None);
                    let status = BatonError::Overloaded(format!(
                        "more than {} requests in flight on this member; retry after a pause",
                        rec.shared.limit
                    ))
                    .to_status();
                    rec.finish(status.code());
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        };
        shared.metrics.in_flight.inc();
        let mut rec = Recorder::new(shared, method, permit);
        rec.in_flight = true;
        Box::pin(async move {
            let (resp, path) = NOTE
                .scope(RefCell::new(None), async move {
                    let r = inner.call(req).await;
                    (r, NOTE.with(|n| n.borrow_mut().take()))
                })
                .await;
            rec.path = path;
            let resp = resp?;
            // An error is answered in the headers alone ("trailers-only"); anything else ends
            // with trailers carrying the status, or is cut short.
            if let Some(code) = header_code(resp.headers()) {
                rec.finish(code);
                return Ok(resp);
            }
            let (parts, body) = resp.into_parts();
            let body = Body::new(Metered {
                inner: body,
                rec: Some(rec),
            });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

fn header_code(h: &http::HeaderMap) -> Option<tonic::Code> {
    h.get("grpc-status")
        .map(|v| tonic::Code::from_bytes(v.as_bytes()))
}

/// Records one request's end.
struct Recorder {
    shared: Arc<Shared>,
    method: Method,
    started: Instant,
    path: Option<String>,
    permit: Option<OwnedSemaphorePermit>,
    /// Counted in the in-flight gauge (every request that was not shed).
    in_flight: bool,
    counted: bool,
}

impl Recorder {
    fn new(shared: Arc<Shared>, method: Method, permit: Option<OwnedSemaphorePermit>) -> Self {
        Recorder {
            shared,
            method,
            started: Instant::now(),
            path: None,
            counted: false,
            in_flight: false,
            permit,
        }
    }

    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        let took = self.started.elapsed();
        let m = &self.shared.metrics;
        let l = &self.method.labels;
        if self.shared.record {
            m.handled
                .get_or_create(&CodeLabels {
                    grpc_service: l.grpc_service.clone(),
                    grpc_method: l.grpc_method.clone(),
                    grpc_type: l.grpc_type,
                    grpc_code: code_name(code),
                })
                .inc();
            m.handling.get_or_create(l).observe(took.as_secs_f64());
        }
        if std::mem::take(&mut self.in_flight) {
            m.in_flight.dec();
        }
        self.permit = None;
        let slow = self.shared.stages.slow();
        if !self.method.long_lived && took > slow.request {
            self.shared
                .stages
                .counters
                .slow_requests
                .fetch_add(1, Relaxed);
            warn!(
                member = slow.member_id,
                term = self.shared.stages.term(),
                method = %format!("{}/{}", l.grpc_service, l.grpc_method),
                path = self.path.as_deref().unwrap_or(""),
                code = code_name(code),
                took_ms = took.as_millis() as u64,
                expected_ms = slow.request.as_millis() as u64,
                "request took too long"
            );
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // The client went away before the answer ended.
        self.finish(tonic::Code::Cancelled);
    }
}

/// A response body that records its request when the status arrives in the trailers.
struct Metered {
    inner: Body,
    rec: Option<Recorder>,
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = frame.trailers_ref() {
                    if let Some(mut rec) = this.rec.take() {
                        rec.finish(header_code(t).unwrap_or(tonic::Code::Ok));
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut rec) = this.rec.take() {
                    rec.finish(tonic::Code::Internal);
                }
            }
            Poll::Ready(None) => {
                if let Some(mut rec) = this.rec.take() {
                    rec.finish(tonic::Code::Ok);
                }
            }
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A status code as go-grpc-prometheus spells it (what etcd-style alert rules match).
pub fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}
