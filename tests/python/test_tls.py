"""Baton from Python over TLS: a member started by run.sh with TLS and required client
certificates (made by scripts/gen-certs.sh) at $BATON_TLS_ADDR, certificates in
$BATON_TLS_CERTS.

  * with the CA and a client certificate: create and read back;
  * without a client certificate: refused (UNAVAILABLE), nothing served;
  * plaintext against the TLS port: refused.
"""

import os
import time
import uuid

import grpc
import pytest

from baton.v1 import cluster_pb2, cluster_pb2_grpc
from baton.v1 import znodes_pb2, znodes_pb2_grpc

ADDR = os.environ.get("BATON_TLS_ADDR")
CERTS = os.environ.get("BATON_TLS_CERTS", "")

pytestmark = pytest.mark.skipif(not ADDR, reason="run through tests/python/run.sh (BATON_TLS_ADDR)")


def read(name):
    with open(os.path.join(CERTS, name), "rb") as f:
        return f.read()


def credentials(with_client_cert=True):
    if with_client_cert:
        return grpc.ssl_channel_credentials(
            root_certificates=read("ca.crt"),
            private_key=read("client.key"),
            certificate_chain=read("client.crt"),
        )
    return grpc.ssl_channel_credentials(root_certificates=read("ca.crt"))


@pytest.fixture(scope="module")
def tls_channel():
    ch = grpc.secure_channel(ADDR, credentials())
    cluster = cluster_pb2_grpc.ClusterStub(ch)
    deadline = time.monotonic() + 60
    last = None
    while time.monotonic() < deadline:
        try:
            if cluster.Status(cluster_pb2.StatusRequest(), timeout=2).role == cluster_pb2.LEADER:
                break
        except grpc.RpcError as e:
            last = e
        time.sleep(0.1)
    else:
        pytest.fail(f"TLS member at {ADDR} not serving within 60 s: {last}")
    yield ch
    ch.close()


def test_create_and_read_over_tls_with_a_client_certificate(tls_channel):
    z = znodes_pb2_grpc.ZNodesStub(tls_channel)
    path = f"/py-tls-{uuid.uuid4().hex[:12]}"
    z.Create(znodes_pb2.CreateRequest(path=path, data=b"over tls"), timeout=10)
    got = z.GetData(znodes_pb2.GetDataRequest(path=path), timeout=10)
    assert got.data == b"over tls"


def test_a_client_without_a_certificate_is_refused(tls_channel):
    with grpc.secure_channel(ADDR, credentials(with_client_cert=False)) as ch:
        z = znodes_pb2_grpc.ZNodesStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            z.GetData(znodes_pb2.GetDataRequest(path="/"), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value


def test_plaintext_against_the_tls_port_is_refused(tls_channel):
    with grpc.insecure_channel(ADDR) as ch:
        z = znodes_pb2_grpc.ZNodesStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            z.GetData(znodes_pb2.GetDataRequest(path="/"), timeout=5)
        assert e.value.code() != grpc.StatusCode.OK
        print("plaintext refused:", e.value.code(), e.value.details())


def digest(user, password):
    """ZooKeeper's digest id: user:base64(sha1(user:password))."""
    import base64
    import hashlib

    h = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(h).decode()}"


def test_digest_credentials_and_acls_over_tls(tls_channel):
    from baton.v1 import auth_pb2, auth_pb2_grpc, common_pb2
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    alice = [("authorization", "digest alice:pw")]
    bob = [("authorization", "digest bob:pw")]
    who = auth_pb2_grpc.AuthStub(tls_channel).WhoAmI(
        auth_pb2.WhoAmIRequest(), metadata=alice, timeout=10
    )
    assert f"digest:{digest('alice', 'pw')}" in who.ids and who.secure
    znodes = znodes_pb2_grpc.ZNodesStub(tls_channel)
    path = f"/py-acl-{uuid.uuid4().hex[:12]}"
    # An explicit digest entry: `auth` would also name the client certificate, which every
    # caller of this test shares.
    only_alice = common_pb2.Acl(perms=31, scheme="digest", id=digest("alice", "pw"))
    znodes.Create(
        znodes_pb2.CreateRequest(path=path, data=b"a", acl=[only_alice]),
        metadata=alice,
        timeout=10,
    )
    assert znodes.GetData(znodes_pb2.GetDataRequest(path=path), metadata=alice, timeout=10).data == b"a"
    with pytest.raises(grpc.RpcError) as ei:
        znodes.GetData(znodes_pb2.GetDataRequest(path=path), metadata=bob, timeout=10)
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    status = rpc_status.from_call(ei.value)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "NO_AUTH"
    got = znodes.GetAcl(znodes_pb2.GetAclRequest(path=path), metadata=alice, timeout=10)
    assert [(a.scheme, a.id, a.perms) for a in got.acl] == [("digest", digest("alice", "pw"), 31)]
