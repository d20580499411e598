//! The client's error type: a gRPC status from the server (with its `ErrorInfo` reason), or a
//! failure on the client side (bad endpoint, no connection, no reply in time, a watch reply).

use std::time::Duration;

use tonic::{Code, Status};

pub use crate::error::Reason;
use crate::error::{status_reason, status_reason_name};

/// Why a client call failed.
///
/// Every variant displays as one line that starts with an upper-snake name, e.g.
/// `NO_NODE: no node: /a/b` or `UNAVAILABLE: tcp connect error`, so a CLI can print it as is.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server (or the transport) answered with a gRPC status. Baton's statuses carry a
    /// `google.rpc.ErrorInfo` whose reason is ZooKeeper's error name; see
    /// [`ClientError::reason`].
    #[error("{}", status_line(.0))]
    Status(Status),
    /// An endpoint string could not be understood.
    #[error("INVALID_ENDPOINT: {endpoint:?}: {why}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        why: String,
    },
    /// No endpoint accepted a connection.
    #[error("UNAVAILABLE: cannot connect to {endpoints}: {message}")]
    Connect {
        /// The endpoints that were tried, comma-separated.
        endpoints: String,
        /// The last connection error.
        message: String,
    },
    /// No reply arrived within the call's timeout. For a write, the outcome is unknown: it
    /// may or may not have been applied.
    #[error("DEADLINE_EXCEEDED: no reply within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The server refused to add a watch (e.g. `NO_NODE` for a DATA watch on a missing node).
    #[error("{reason}: {message}")]
    Watch {
        /// The error name as sent, e.g. `NO_NODE`, `INVALID_PATH` (see [`Reason`]).
        reason: String,
        /// Human-readable detail.
        message: String,
    },
    /// A watch asked to resume from a zxid older than the member's event history; nothing was
    /// registered.
    #[error("COMPACTED: watch history starts at zxid {oldest_zxid}; resume from {} or later", .oldest_zxid.saturating_sub(1))]
    Compacted {
        /// The oldest zxid whose events the member still holds.
        oldest_zxid: u64,
    },
    /// The watch stream ended without a status (the server closed it).
    #[error("UNAVAILABLE: the watch stream was closed by the server")]
    WatchClosed,
    /// An argument was rejected before anything was sent.
    #[error("BAD_ARGUMENTS: {0}")]
    InvalidArgument(String),
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        if refused_for_plaintext(&status) {
            return ClientError::Status(Status::unavailable(
                "the server requires TLS: connect with https:// and the CA certificate that \
                 signs the members' certificates (ClientOptions::tls; baton --cacert)",
            ));
        }
        ClientError::Status(status)
    }
}

/// Whether a member closed the connection with HTTP/2 INADEQUATE_SECURITY: what a TLS port
/// answers to a plaintext client.
fn refused_for_plaintext(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::INADEQUATE_SECURITY) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

impl ClientError {
    /// The machine-readable reason: the `ErrorInfo` reason of a server status (`NO_NODE`,
    /// `BAD_VERSION`, `SESSION_EXPIRED`, ...), the reason of a refused watch, or `COMPACTED`.
    /// `None` for transport and client-side errors, and for a reason this build does not know
    /// (the error's text still names it).
    pub fn reason(&self) -> Option<Reason> {
        match self {
            ClientError::Status(s) => status_reason(s),
            ClientError::Watch { reason, .. } => Reason::parse(reason),
            ClientError::Compacted { .. } => Some(Reason::Compacted),
            _ => None,
        }
    }

    /// The gRPC code this error corresponds to.
    pub fn code(&self) -> Code {
        match self {
            ClientError::Status(s) => s.code(),
            ClientError::InvalidEndpoint { .. } | ClientError::InvalidArgument(_) => {
                Code::InvalidArgument
            }
            ClientError::Connect { .. } | ClientError::WatchClosed => Code::Unavailable,
            ClientError::Timeout(_) => Code::DeadlineExceeded,
            ClientError::Watch { reason, .. } => {
                Reason::parse(reason).map_or(Code::Unknown, Reason::code)
            }
            ClientError::Compacted { .. } => Code::OutOfRange,
        }
    }

    /// The gRPC status, if the error came from one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            ClientError::Status(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the failure is transient, so the same request may succeed later: no leader, no
    /// quorum, member down or shutting down, connection refused or lost.
    ///
    /// A write that failed with a retryable error after it reached the server may still have
    /// been applied, except when the reason is `UNAVAILABLE` (the server says it did not apply
    /// it); the client only retries writes itself when it knows they were not applied.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Status(s) => {
                s.code() == Code::Unavailable
                    || matches!(
                        status_reason(s),
                        Some(Reason::Unavailable | Reason::Overloaded)
                    )
                    || is_connection_error(s)
            }
            ClientError::Connect { .. } | ClientError::WatchClosed => true,
            _ => false,
        }
    }

    /// Whether the connection failed (refused, reset, closed mid-stream) rather than the
    /// server answering with an error.
    pub fn is_connection_error(&self) -> bool {
        match self {
            ClientError::Status(s) => is_connection_error(s),
            ClientError::Connect { .. } | ClientError::WatchClosed => true,
            _ => false,
        }
    }

    /// Whether this is the given reason, e.g. `err.is(Reason::NoNode)`.
    pub fn is(&self, reason: Reason) -> bool {
        self.reason() == Some(reason)
    }
}

/// Whether the status shows the request never reached a server (the connection could not be
/// made), or the server said it did not apply it; either way a write can be sent again.
pub(crate) fn not_applied(status: &Status) -> bool {
    if status_reason(status) == Some(Reason::Unavailable) {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether a status was made on this side from a transport failure. tonic keeps the transport
/// error as the status's source; statuses received from a server have none.
pub(crate) fn is_connection_error(status: &Status) -> bool {
    status_reason_name(status).is_none()
        && matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
        )
        && std::error::Error::source(status).is_some()
}

/// The upper-snake name of a gRPC code (`NOT_FOUND`, `UNAVAILABLE`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `REASON: message` on one line; the code's name stands in for a missing reason.
fn status_line(status: &Status) -> String {
    let name = status_reason_name(status).unwrap_or_else(|| code_name(status.code()).to_string());
    let message = one_line(status.message());
    if message.is_empty() {
        name
    } else {
        format!("{name}: {message}")
    }
}

/// Collapses line breaks and runs of whitespace so an error stays on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BatonError;

    #[test]
    fn displays_reason_and_message() {
        let e = ClientError::from(Status::from(BatonError::NoNode("/a/b".into())));
        assert_eq!(e.to_string(), "NO_NODE: no node: /a/b");
        assert_eq!(e.reason(), Some(Reason::NoNode));
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.is(Reason::NoNode));
        assert!(!e.is_retryable());
    }

    #[test]
    fn displays_code_without_reason() {
        let e = ClientError::from(Status::unavailable("tcp connect error\n refused"));
        assert_eq!(e.to_string(), "UNAVAILABLE: tcp connect error refused");
        assert_eq!(e.reason(), None);
        assert!(e.is_retryable());
        let e = ClientError::from(Status::internal(""));
        assert_eq!(e.to_string(), "INTERNAL");
    }

    #[test]
    fn server_unavailable_is_not_applied() {
        let s = Status::from(BatonError::Unavailable("no leader".into()));
        assert!(not_applied(&s));
        assert!(!not_applied(&Status::unavailable("connection reset")));
        assert!(ClientError::from(s).is_retryable());
    }

    #[test]
    fn client_side_errors() {
        let e = ClientError::Timeout(Duration::from_millis(1500));
        assert_eq!(e.to_string(), "DEADLINE_EXCEEDED: no reply within 1500 ms");
        assert_eq!(e.code(), Code::DeadlineExceeded);
        let e = ClientError::Compacted { oldest_zxid: 42 };
        assert_eq!(e.reason(), Some(Reason::Compacted));
        assert!(e.to_string().starts_with("COMPACTED: "));
        let e = ClientError::Watch {
            reason: "NO_NODE".into(),
            message: "no node: /x".into(),
        };
        assert_eq!(e.to_string(), "NO_NODE: no node: /x");
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.is(Reason::NoNode));
        // A reason this build does not know: no Reason, but shown as sent.
        let e = ClientError::Watch {
            reason: "FROM_THE_FUTURE".into(),
            message: "m".into(),
        };
        assert_eq!(e.reason(), None);
        assert_eq!(e.code(), Code::Unknown);
        assert_eq!(e.to_string(), "FROM_THE_FUTURE: m");
    }
}
