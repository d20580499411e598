//! Connection limits of the client port, applied at accept: at most so many connections from
//! one IP address and in all. A connection over a limit is closed at once (the client sees
//! the connection reset and retries, or uses another member) and counted.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::warn;

use super::metrics::{Metrics, RejectLabels};

/// Bounds on client connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// From one IP address.
    pub per_ip: usize,
    /// In all.
    pub total: usize,
}

/// Open connections, by address.
#[derive(Debug, Default)]
struct Open {
    by_ip: HashMap<IpAddr, usize>,
    total: usize,
    /// Refusals since the last warning (warnings are rate-limited to one per second).
    refused_quietly: u64,
    last_warning: Option<std::time::Instant>,
}

/// Filters a stream of accepted connections through the limits.
pub struct Admit<S> {
    inner: S,
    limits: ConnLimits,
    open: Arc<Mutex<Open>>,
    metrics: Arc<Metrics>,
}

impl<S> Admit<S> {
    /// Admits the connections of `inner` within `limits`.
    pub fn new(inner: S, limits: ConnLimits, metrics: Arc<Metrics>) -> Self {
        Admit {
            inner,
            limits,
            open: Arc::default(),
            metrics,
        }
    }
}

impl<S> Stream for Admit<S>
where
    S: Stream<Item = io::Result<TcpStream>> + Unpin,
{
    type Item = io::Result<Tracked>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let stream = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(s))) => s,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let ip = stream
                .peer_addr()
                .map(|a| a.ip())
                .unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let mut open = this.open.lock().unwrap_or_else(|e| e.into_inner());
            let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
            let refused = if from_ip >= this.limits.per_ip {
                Some(("per_ip", this.limits.per_ip))
            } else if open.total >= this.limits.total {
                Some(("total", this.limits.total))
            } else {
                None
            };
            if let Some((reason, limit)) = refused {
                this.metrics
                    .connections_rejected
                    .get_or_create(&RejectLabels { reason })
                    .inc();
                let now = std::time::Instant::now();
                if open
                    .last_warning
                    .is_none_or(|t| now.duration_since(t).as_secs() >= 1)
                {
                    let quiet = std::mem::take(&mut open.refused_quietly);
                    open.last_warning = Some(now);
                    warn!(%ip, limit, reason, also_refused = quiet, "connection refused: limit reached");
                } else {
                    open.refused_quietly += 1;
                }
                drop(open);
                drop(stream);
                continue;
            }
            *open.by_ip.entry(ip).or_insert(0) += 1;
            open.total += 1;
            drop(open);
            this.metrics.connections.inc();
            return Poll::Ready(Some(Ok(Tracked {
                stream,
                _slot: Slot {
                    ip,
                    open: this.open.clone(),
                    metrics: this.metrics.clone(),
                },
            })));
        }
    }
}

/// A connection's place within the limits, given back when it closes.
struct Slot {
    ip: IpAddr,
    open: Arc<Mutex<Open>>,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
        open.total = open.total.saturating_sub(1);
        self.metrics.connections.dec();
    }
}

/// An admitted connection.
pub struct Tracked {
    stream: TcpStream,
    _slot: Slot,
}

impl Connected for Tracked {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl crate::tls::Peek for Tracked {
    fn peek<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl std::future::Future<Output = io::Result<usize>> + Send + 'a {
        self.stream.peek(buf)
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
