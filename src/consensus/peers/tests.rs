//! How a failed peer call is classified: only a call that cannot have reached the other
//! member may be sent again elsewhere.

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::*;
use crate::proto::raft::ForwardRequest;

async fn forward_to(peers: &Peers, id: u64, addr: &str) -> tonic::Status {
    let mut c = peers.client(id, addr).expect("client");
    let mut req = tonic::Request::new(ForwardRequest {
        requests: vec![],
        hops: 1,
    });
    req.set_timeout(Duration::from_secs(5));
    c.forward(req).await.expect_err("the call must fail")
}

#[tokio::test]
async fn a_refused_connection_was_not_delivered() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let peers = Peers::new(1, ClusterIdentity::detached(None), Faults::new(1));
    let s = forward_to(&peers, 2, &addr).await;
    let e = status_error("forwarding", &s, true);
    assert!(matches!(e, BatonError::Unavailable(_)), "{s:?} -> {e:?}");
}

#[tokio::test]
async fn a_link_cut_by_fault_injection_was_not_delivered() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let faults = Faults::new(1);
    faults.block(1, [2]);
    let peers = Peers::new(1, ClusterIdentity::detached(None), faults);
    let s = forward_to(&peers, 2, &addr).await;
    let e = status_error("forwarding", &s, true);
    assert!(matches!(e, BatonError::Unavailable(_)), "{s:?} -> {e:?}");
    drop(l);
}

/// A peer that accepts the connection and reads the request, then drops the connection:
/// closed (`reset` false) or reset (`reset` true, as when a process dies with unread data).
async fn call_dropped_after_the_request(reset: bool) -> tonic::Status {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut sock, _) = l.accept().await.unwrap();
        // Read until the request's headers and body have arrived, then drop the socket.
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 60 {
            match tokio::time::timeout(Duration::from_millis(300), sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got += n,
                Err(_) => break,
            }
        }
        if reset {
            // A zero linger resets the connection on drop and never blocks (the reason for
            // the deprecation is a non-zero linger).
            #[allow(deprecated)]
            let _ = sock.set_linger(Some(Duration::ZERO));
        }
        got
    });
    let peers = Peers::new(1, ClusterIdentity::detached(None), Faults::new(1));
    let s = forward_to(&peers, 2, &addr).await;
    let got = server.await.unwrap();
    assert!(got >= 24, "the peer received the request ({got} bytes)");
    s
}

/// The leader dies after reading a forwarded write (kill -9 mid-call): the write may have
/// been proposed, so it must not be sent again elsewhere.
#[tokio::test]
async fn a_connection_lost_after_sending_may_have_been_delivered() {
    for reset in [false, true] {
        let s = call_dropped_after_the_request(reset).await;
        let e = status_error("forwarding", &s, true);
        assert!(
            matches!(e, BatonError::OutcomeUnknown(_)),
            "reset {reset}: {s:?} -> {e:?}"
        );
        // A call that cannot have changed anything (a read index) is simply unavailable.
        let e = status_error("read index", &s, false);
        assert!(matches!(e, BatonError::Unavailable(_)), "{e:?}");
    }
}
