//! TLS on the client and peer ports: certificates loaded from PEM files, reloaded on SIGHUP,
//! and an accept loop that does the handshakes.
//!
//! Why an accept loop of our own instead of tonic's `ServerTlsConfig`: tonic builds its
//! acceptor once, from one certificate, so certificates could never change without a
//! restart. Here each port holds its current `rustls::ServerConfig` behind a lock; every new
//! handshake takes the config current at that moment (after the ClientHello arrived), so a
//! reload changes what new connections see while established ones keep their session. The
//! loop hands handshakes to tasks of their own, each bounded by a timeout and counted against
//! a cap, so a flood of connections that never finish a handshake cannot stop the loop nor
//! hold resources for long; finished connections go to tonic's `serve_with_incoming`.
//!
//! Trust:
//! - the **client port** serves the member's certificate; with a client CA it requires a
//!   client certificate signed by that CA;
//! - the **peer port** always requires a certificate signed by the peer CA that names a
//!   member: a SAN URI `baton://member/<id>` ([`member_id`]). The peer service checks that id
//!   against the sender the request claims (the `baton-member-id` header on every request, and
//!   the ids in Vote, AppendEntries, InstallSnapshot, Follow, LeaderGone, UpdateMember and
//!   TransferStep bodies), so one member cannot pose as another and a client certificate
//!   (which names no member) is refused;
//! - outgoing peer connections present the member's certificate and check the other member's
//!   against the peer CA and the host name of its peer address.
//!
//! Both ports negotiate ALPN `h2`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tracing::{debug, info, warn};

/// The prefix of the SAN URI that names the member a certificate speaks for.
pub const MEMBER_URI_PREFIX: &str = "baton://member/";

/// Handshakes in progress on one port at most; connections beyond are closed at once. On the
/// client port the per-IP and total connection limits apply first, so one source cannot take
/// every slot unless its limit is raised above this.
pub const MAX_HANDSHAKES: usize = 1024;

/// The default bound on one TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SAN URI naming member `id`.
pub fn member_uri(id: u64) -> String {
    format!("{MEMBER_URI_PREFIX}{id}")
}

/// The member a certificate (DER) speaks for: the id of its one `baton://member/<id>` SAN URI.
/// `None` for a certificate that cannot be parsed, names no member, or names several.
pub fn member_id(cert_der: &[u8]) -> Option<u64> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if let Some(rest) = uri.strip_prefix(MEMBER_URI_PREFIX) {
                let id = rest.parse::<u64>().ok().filter(|&id| id > 0)?;
                if found.is_some_and(|f| f != id) {
                    return None;
                }
                found = Some(id);
            }
        }
    }
    found
}

/// The member id proven by the peer's certificate, put in the request extensions of every
/// request admitted on a TLS peer port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerMember(pub u64);

/// Where a member's certificates are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The member's certificate chain (PEM), served on both ports and presented to peers.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA(s) that sign member certificates (PEM).
    pub peer_ca: PathBuf,
    /// The CA(s) that sign client certificates (PEM); `None`: clients need none.
    pub client_ca: Option<PathBuf>,
    /// Bound on one handshake.
    pub handshake_timeout: Duration,
}

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing, unreadable or not what it should be.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The files do not fit together (key and certificate, the member id).
    #[error("{0}")]
    Invalid(String),
}

/// Which port a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The client port.
    Client,
    /// The peer port.
    Peer,
}

impl Port {
    fn name(self) -> &'static str {
        match self {
            Port::Client => "client",
            Port::Peer => "peer",
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |why: String| TlsError::File {
        path: path.to_path_buf(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path, &read(path)?)? {
        roots.add(cert).map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// ring, the one provider in the build (tonic's `tls-ring`): aws-lc-rs would need a C and
/// cmake build; rustls marks ring's provider deprecated only for lacking post-quantum key
/// exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Everything built from the files at one moment.
struct Material {
    client_port: Arc<ServerConfig>,
    peer_port: Arc<ServerConfig>,
    peer_client: ClientTlsConfig,
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<Arc<RootCertStore>>,
    files: &TlsFiles,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| TlsError::Invalid(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", files.key.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn load(files: &TlsFiles, my_id: u64) -> Result<Material, TlsError> {
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let chain = certs(&files.cert, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::File {
        path: files.key.clone(),
        why: format!("not a PEM private key: {e}"),
    })?;
    match member_id(&chain[0]) {
        Some(id) if id == my_id => {}
        Some(id) => {
            return Err(TlsError::Invalid(format!(
                "{}: the certificate names member {id} ({}), but this member is {my_id}",
                files.cert.display(),
                member_uri(id)
            )))
        }
        None => {
            return Err(TlsError::Invalid(format!(
                "{}: the certificate names no member: it needs the SAN URI {}",
                files.cert.display(),
                member_uri(my_id)
            )))
        }
    }
    let peer_roots = roots(&files.peer_ca)?;
    let client_roots = match &files.client_ca {
        Some(p) => Some(roots(p)?),
        None => None,
    };
    let peer_ca_pem = read(&files.peer_ca)?;
    Ok(Material {
        client_port: server_config(chain.clone(), key.clone_key(), client_roots, files)?,
        peer_port: server_config(chain, key, Some(peer_roots), files)?,
        peer_client: ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(peer_ca_pem))
            .identity(Identity::from_pem(cert_pem, key_pem)),
    })
}

/// Refusals since the last warning, per port (warnings are rate-limited).
#[derive(Default)]
struct Quiet {
    last: Option<Instant>,
    since: u64,
}

/// A member's TLS state: the current configs of both ports and of its outgoing peer
/// connections, replaced whole by [`Tls::reload`].
pub struct Tls {
    files: TlsFiles,
    my_id: u64,
    client_port: RwLock<Arc<ServerConfig>>,
    peer_port: RwLock<Arc<ServerConfig>>,
    peer_client: RwLock<ClientTlsConfig>,
    /// Bumped by every reload, so outgoing peer channels are rebuilt with the new files.
    generation: AtomicU64,
    quiet: Mutex<[Quiet; 2]>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("my_id", &self.my_id)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files of member `my_id`.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, a key that does not match the certificate, or a
    /// certificate that does not name `my_id` ([`member_uri`]).
    pub fn load(files: TlsFiles, my_id: u64) -> Result<Arc<Tls>, TlsError> {
        let m = load(&files, my_id)?;
        Ok(Arc::new(Tls {
            files,
            my_id,
            client_port: RwLock::new(m.client_port),
            peer_port: RwLock::new(m.peer_port),
            peer_client: RwLock::new(m.peer_client),
            generation: AtomicU64::new(0),
            quiet: Mutex::default(),
        }))
    }

    /// Reads the files again. New handshakes and new outgoing peer connections use them;
    /// established connections are kept. On an error nothing changes.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let m = load(&self.files, self.my_id)?;
        *self
            .client_port
            .write()
            .unwrap_or_else(PoisonError::into_inner) = m.client_port;
        *self
            .peer_port
            .write()
            .unwrap_or_else(PoisonError::into_inner) = m.peer_port;
        *self
            .peer_client
            .write()
            .unwrap_or_else(PoisonError::into_inner) = m.peer_client;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The config of outgoing peer connections, and its generation.
    pub fn peer_client(&self) -> (u64, ClientTlsConfig) {
        let g = self.generation.load(Ordering::SeqCst);
        let c = self
            .peer_client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (g, c)
    }

    /// The generation of the files in use (0, then +1 per reload).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn server_config(&self, port: Port) -> Arc<ServerConfig> {
        let lock = match port {
            Port::Client => &self.client_port,
            Port::Peer => &self.peer_port,
        };
        lock.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Logs a refused connection: at most one warning per port every 10 s, with the count of
    /// the others (a flood must not flood the log).
    fn refused(&self, port: Port, why: &str) {
        let mut q = self.quiet.lock().unwrap_or_else(PoisonError::into_inner);
        let q = &mut q[port as usize];
        if q.last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            let also = std::mem::take(&mut q.since);
            q.last = Some(Instant::now());
            warn!(
                port = port.name(),
                why,
                also_refused = also,
                "TLS connection refused"
            );
        } else {
            q.since += 1;
            debug!(port = port.name(), why, "TLS connection refused");
        }
    }

    async fn handshake<T>(&self, port: Port, io: T) -> Result<TlsStream<T>, String>
    where
        T: AsyncRead + AsyncWrite + Peek + Unpin,
    {
        // A TLS client opens with a handshake record (content type 22). Anything else is
        // answered in plain HTTP/2, before rustls reads it and answers with an alert.
        let mut first = [0u8; 1];
        match io.peek(&mut first).await {
            Ok(0) => return Err(CLOSED_EARLY.into()),
            Ok(_) if first[0] != 0x16 => {
                refuse_plaintext(io).await;
                return Err("not a TLS client (plaintext HTTP/2?)".into());
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        let lazy = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let start = lazy.await.map_err(|e| e.to_string())?;
        start
            .into_stream(self.server_config(port))
            .await
            .map_err(|e| e.to_string())
    }

    /// The TLS connections of the accepted connections `inner`, for `serve_with_incoming`.
    /// The loop ends when the returned stream is dropped (the server stopped), which drops
    /// `inner` and so closes the listener.
    pub fn incoming<S, T>(
        self: &Arc<Self>,
        port: Port,
        inner: S,
    ) -> ReceiverStream<io::Result<TlsStream<T>>>
    where
        S: Stream<Item = io::Result<T>> + Send + Unpin + 'static,
        T: AsyncRead + AsyncWrite + Peek + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(64);
        let tls = self.clone();
        tokio::spawn(async move {
            let mut inner = inner;
            let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => break,
                    next = inner.next() => next,
                };
                let io = match next {
                    None => break,
                    Some(Ok(io)) => io,
                    Some(Err(e)) => {
                        debug!(error = %e, "accept failed");
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tls.refused(port, "too many handshakes in progress");
                    continue;
                };
                let tls = tls.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let timeout = tls.files.handshake_timeout;
                    match tokio::time::timeout(timeout, tls.handshake(port, io)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        // Connectivity probes (other members check that this port accepts
                        // connections) connect and close at once: not a refusal.
                        Ok(Err(why)) if why == CLOSED_EARLY => {}
                        Ok(Err(why)) => tls.refused(port, &why),
                        Err(_) => tls.refused(port, "handshake timed out"),
                    }
                });
            }
            debug!(port = port.name(), "TLS accept loop ended");
        });
        ReceiverStream::new(rx)
    }
}

/// Accepted connections whose first bytes can be looked at before they are read.
pub trait Peek {
    /// Reads into `buf` what has arrived, without consuming it; waits for at least a byte;
    /// `Ok(0)` at end of stream.
    fn peek<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl std::future::Future<Output = io::Result<usize>> + Send + 'a;
}

impl Peek for tokio::net::TcpStream {
    fn peek<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl std::future::Future<Output = io::Result<usize>> + Send + 'a {
        tokio::net::TcpStream::peek(self, buf)
    }
}

/// Why a connection closed before it sent anything.
const CLOSED_EARLY: &str = "closed before the handshake";

/// The debug text sent to a plaintext HTTP/2 client on a TLS port.
pub const PLAINTEXT_REFUSAL: &str =
    "this port requires TLS: connect with https:// and the cluster's CA certificate";

/// Answers a client that spoke plaintext (HTTP/2) to a TLS port in plain HTTP/2: a SETTINGS
/// frame at once (clients wait for it before they send a call), then, once the first call
/// (a HEADERS frame) arrived or a second passed, a GOAWAY with INADEQUATE_SECURITY whose debug
/// text says TLS is required, and the connection closes. The GOAWAY names every stream as
/// possibly processed (last stream id 2^31-1): clients then fail the call with its reason
/// instead of retrying it as never sent (until their deadline, without a cause). Bounded by the
/// handshake timeout.
async fn refuse_plaintext<T: AsyncRead + AsyncWrite + Unpin>(mut io: T) {
    if io.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.is_err() || io.flush().await.is_err() {
        return;
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while first_call(&seen).is_none() && seen.len() < 64 * 1024 {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            Ok(_) => return,
            Err(_) => break,
        }
    }
    let payload_len = 8 + PLAINTEXT_REFUSAL.len();
    let mut frame = (payload_len as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[7, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    frame.extend_from_slice(&0xcu32.to_be_bytes());
    frame.extend_from_slice(PLAINTEXT_REFUSAL.as_bytes());
    if let Some(stream) = first_call(&seen) {
        frame.extend_from_slice(&[0, 0, 4, 3, 0]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(&0xcu32.to_be_bytes());
    }
    if io.write_all(&frame).await.is_err() || io.flush().await.is_err() {
        return;
    }
    let _ = io.shutdown().await;
    // Read what the client still sends until it closes, so that closing does not reset the
    // connection before it read the GOAWAY.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// The stream id of the first HEADERS frame among the bytes a plaintext HTTP/2 client sent
/// (its 24-byte preface, then frames), if one arrived whole.
fn first_call(seen: &[u8]) -> Option<u32> {
    const PREFACE: usize = 24;
    let mut at = PREFACE;
    while seen.len() >= at + 9 {
        if seen[at + 3] == 1 {
            let id = u32::from_be_bytes([seen[at + 5], seen[at + 6], seen[at + 7], seen[at + 8]]);
            return Some(id & 0x7fff_ffff);
        }
        let len = (usize::from(seen[at]) << 16)
            | (usize::from(seen[at + 1]) << 8)
            | usize::from(seen[at + 2]);
        at += 9 + len;
    }
    None
}

/// Reloads `tls` on every SIGHUP until the process ends; a failed reload is logged and the
/// files in use are kept.
pub async fn reload_on_sighup(tls: Option<Arc<Tls>>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP: certificates will not be reloaded");
        return;
    };
    while hup.recv().await.is_some() {
        match &tls {
            None => info!("SIGHUP: TLS is off, nothing to reload"),
            Some(tls) => match tls.reload() {
                Ok(()) => info!(
                    generation = tls.generation(),
                    "SIGHUP: certificates reloaded; new connections use them"
                ),
                Err(e) => {
                    warn!(error = %e, "SIGHUP: certificates not reloaded; keeping the ones in use")
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_uri_round_trips_through_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(member_uri(7)).unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(member_id(cert.der()), Some(7));
    }

    #[test]
    fn certificates_naming_no_member_or_two_members_name_none() {
        let key = rcgen::KeyPair::generate().unwrap();
        let plain = rcgen::CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(member_id(plain.der()), None);
        let mut two = rcgen::CertificateParams::new(vec![]).unwrap();
        for id in [1, 2] {
            two.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(member_uri(id)).unwrap(),
            ));
        }
        assert_eq!(member_id(two.self_signed(&key).unwrap().der()), None);
        assert_eq!(member_id(b"not a certificate"), None);
    }
}
