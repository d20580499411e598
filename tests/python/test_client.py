"""Baton from Python: stubs generated from proto/ at test time (see run.sh).

Checks, against a real batond at $BATON_ADDR:
  * create / read / versioned set, and the errors of each, with the google.rpc.ErrorInfo
    carried in the `grpc-status-details-bin` trailer (reason = ZooKeeper's name, domain baton);
  * watches over the bidi stream: a one-shot DATA watch and a PERSISTENT watch receive their
    events with the zxid of the change;
  * sessions: open, create an EPHEMERAL node owned by the session, close, the node is gone.
"""

import os
import queue
import threading
import time
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from baton.v1 import cluster_pb2, cluster_pb2_grpc
from baton.v1 import common_pb2
from baton.v1 import sessions_pb2, sessions_pb2_grpc
from baton.v1 import watches_pb2, watches_pb2_grpc
from baton.v1 import znodes_pb2, znodes_pb2_grpc

ADDR = os.environ.get("BATON_ADDR", "127.0.0.1:7420")
TIMEOUT = 10.0  # seconds, per RPC


@pytest.fixture(scope="session")
def channel():
    ch = grpc.insecure_channel(ADDR)
    cluster = cluster_pb2_grpc.ClusterStub(ch)
    deadline = time.monotonic() + 60
    last = None
    while time.monotonic() < deadline:
        try:
            st = cluster.Status(cluster_pb2.StatusRequest(), timeout=2)
            if st.role == cluster_pb2.LEADER:
                break
            last = f"role {st.role}"
        except grpc.RpcError as e:  # not up yet
            last = e
        time.sleep(0.1)
    else:
        pytest.fail(f"batond at {ADDR} not serving within 60 s: {last}")
    yield ch
    ch.close()


@pytest.fixture()
def znodes(channel):
    return znodes_pb2_grpc.ZNodesStub(channel)


def unique(prefix="py"):
    return f"/{prefix}-{uuid.uuid4().hex[:12]}"


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """Decodes the ErrorInfo detail from grpc-status-details-bin."""
    trailers = dict(err.trailing_metadata() or ())
    assert "grpc-status-details-bin" in trailers, f"no status details in {list(trailers)}"
    status = rpc_status.from_call(err)
    assert status is not None
    assert status.code == err.code().value[0]
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo among {[d.type_url for d in status.details]}")


def expect_error(fn, code, reason):
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    err = ei.value
    assert err.code() == code, f"{err.code()} {err.details()}"
    info = error_info(err)
    assert info.reason == reason, info
    assert info.domain == "baton", info
    return info


def test_create_read_set_with_version(znodes):
    path = unique()
    created = znodes.Create(
        znodes_pb2.CreateRequest(path=path, data=b"one", mode=common_pb2.PERSISTENT),
        timeout=TIMEOUT,
    )
    assert created.path == path
    assert created.stat.version == 0
    assert created.stat.czxid > 0 and created.stat.czxid == created.stat.mzxid
    assert created.header.zxid >= created.stat.czxid

    got = znodes.GetData(znodes_pb2.GetDataRequest(path=path), timeout=TIMEOUT)
    assert got.data == b"one"
    assert got.stat.version == 0
    assert got.stat.data_length == 3

    s1 = znodes.SetData(
        znodes_pb2.SetDataRequest(path=path, data=b"two", version=0), timeout=TIMEOUT
    )
    assert s1.stat.version == 1
    assert s1.stat.mzxid > created.stat.mzxid

    info = expect_error(
        lambda: znodes.SetData(
            znodes_pb2.SetDataRequest(path=path, data=b"stale", version=0), timeout=TIMEOUT
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "BAD_VERSION",
    )
    assert info.metadata.get("path") == path, info

    any_version = znodes.SetData(
        znodes_pb2.SetDataRequest(path=path, data=b"three", version=-1), timeout=TIMEOUT
    )
    assert any_version.stat.version == 2

    got = znodes.GetData(znodes_pb2.GetDataRequest(path=path), timeout=TIMEOUT)
    assert got.data == b"three" and got.stat.version == 2

    expect_error(
        lambda: znodes.Create(znodes_pb2.CreateRequest(path=path), timeout=TIMEOUT),
        grpc.StatusCode.ALREADY_EXISTS,
        "NODE_EXISTS",
    )
    expect_error(
        lambda: znodes.GetData(znodes_pb2.GetDataRequest(path=path + "/missing"), timeout=TIMEOUT),
        grpc.StatusCode.NOT_FOUND,
        "NO_NODE",
    )
    expect_error(
        lambda: znodes.Create(znodes_pb2.CreateRequest(path="no/slash"), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PATH",
    )

    znodes.Delete(znodes_pb2.DeleteRequest(path=path, version=2), timeout=TIMEOUT)
    ex = znodes.Exists(znodes_pb2.ExistsRequest(path=path), timeout=TIMEOUT)
    assert not ex.exists


class WatchStream:
    """A Watch bidi stream: send() queues requests, next() returns responses with a deadline."""

    def __init__(self, channel):
        self._requests = queue.Queue()
        self._responses = queue.Queue()
        stub = watches_pb2_grpc.WatchesStub(channel)
        self._call = stub.Watch(self._request_iter())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _request_iter(self):
        while True:
            r = self._requests.get()
            if r is None:
                return
            yield r

    def _read(self):
        try:
            for resp in self._call:
                self._responses.put(resp)
        except grpc.RpcError as e:
            self._responses.put(e)

    def send(self, req):
        self._requests.put(req)

    def next(self, timeout=TIMEOUT):
        try:
            r = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch response within {timeout} s") from None
        if isinstance(r, Exception):
            raise r
        return r

    def next_events(self, watch_id, timeout=TIMEOUT):
        """Skips non-event messages for this watch until an Events batch arrives."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no events for watch {watch_id} within {timeout} s")
            r = self.next(left)
            if r.watch_id == watch_id and r.WhichOneof("response") == "events":
                return list(r.events.events)

    def close(self):
        self._requests.put(None)
        self._call.cancel()


def add_watch(ws, path, kind, request_id):
    ws.send(
        watches_pb2.WatchRequest(
            add=watches_pb2.AddWatch(path=path, kind=kind, request_id=request_id)
        )
    )
    deadline = time.monotonic() + TIMEOUT
    while True:
        r = ws.next(max(0.1, deadline - time.monotonic()))
        kind_ = r.WhichOneof("response")
        if kind_ in ("added", "error", "compacted"):
            break
        # Other watches' messages (events, removals) may come first: skip them.
    assert kind_ == "added", r
    assert r.added.request_id == request_id
    assert r.watch_id != 0
    return r


def test_watch_data_and_persistent(channel, znodes):
    path = unique("watch")
    created = znodes.Create(znodes_pb2.CreateRequest(path=path, data=b"v0"), timeout=TIMEOUT)
    ws = WatchStream(channel)
    try:
        added = add_watch(ws, path, watches_pb2.AddWatch.DATA, 1)
        assert added.added.exists
        assert added.added.stat.mzxid == created.stat.mzxid
        assert added.added.zxid >= created.stat.czxid
        data_watch = added.watch_id

        s1 = znodes.SetData(znodes_pb2.SetDataRequest(path=path, data=b"v1", version=-1),
                            timeout=TIMEOUT)
        events = ws.next_events(data_watch)
        assert len(events) == 1, events
        assert events[0].type == watches_pb2.DATA_CHANGED
        assert events[0].path == path
        assert events[0].zxid == s1.stat.mzxid
        # A one-shot watch is removed once it fired, and says so.
        r = ws.next()
        assert r.watch_id == data_watch and r.WhichOneof("response") == "removed", r
        assert r.removed.fired

        # A persistent watch stays: two changes give two events, in zxid order.
        pers = add_watch(ws, path, watches_pb2.AddWatch.PERSISTENT, 2).watch_id
        assert pers != data_watch
        s2 = znodes.SetData(znodes_pb2.SetDataRequest(path=path, data=b"v2", version=-1),
                            timeout=TIMEOUT)
        znodes.Delete(znodes_pb2.DeleteRequest(path=path, version=-1), timeout=TIMEOUT)
        got = []
        while len(got) < 2:
            got += ws.next_events(pers)
        assert [e.type for e in got] == [watches_pb2.DATA_CHANGED, watches_pb2.DELETED], got
        assert got[0].zxid == s2.stat.mzxid
        assert got[1].zxid > got[0].zxid
        assert all(e.path == path for e in got)

        # A DATA watch on a missing node is refused on the stream.
        ws.send(watches_pb2.WatchRequest(add=watches_pb2.AddWatch(
            path=path, kind=watches_pb2.AddWatch.DATA, request_id=3)))
        deadline = time.monotonic() + TIMEOUT
        while True:
            r = ws.next(max(0.1, deadline - time.monotonic()))
            if r.WhichOneof("response") == "error":
                assert r.error.request_id == 3 and r.error.reason == "NO_NODE", r
                break
    finally:
        ws.close()


def test_session_ephemeral_goes_with_close(channel, znodes):
    sessions = sessions_pb2_grpc.SessionsStub(channel)
    opened = sessions.Open(sessions_pb2.OpenSessionRequest(timeout_ms=10_000), timeout=TIMEOUT)
    assert opened.session_id != 0
    assert len(opened.secret) > 0
    assert opened.timeout_ms > 0

    path = unique("eph")
    c = znodes.Create(
        znodes_pb2.CreateRequest(path=path, data=b"mine", mode=common_pb2.EPHEMERAL,
                                 session_id=opened.session_id),
        timeout=TIMEOUT,
    )
    assert c.stat.ephemeral_owner == opened.session_id
    ex = znodes.Exists(znodes_pb2.ExistsRequest(path=path), timeout=TIMEOUT)
    assert ex.exists and ex.stat.ephemeral_owner == opened.session_id
    info = sessions.Get(sessions_pb2.GetSessionRequest(session_id=opened.session_id),
                        timeout=TIMEOUT)
    assert path in list(info.session.ephemerals)

    expect_error(
        lambda: znodes.Create(znodes_pb2.CreateRequest(path=path + "/child"), timeout=TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NO_CHILDREN_FOR_EPHEMERALS",
    )

    sessions.Close(
        sessions_pb2.CloseSessionRequest(session_id=opened.session_id, secret=opened.secret),
        timeout=TIMEOUT,
    )
    ex = znodes.Exists(znodes_pb2.ExistsRequest(path=path), timeout=TIMEOUT)
    assert not ex.exists, "ephemeral node outlived its closed session"

    expect_error(
        lambda: znodes.Create(
            znodes_pb2.CreateRequest(path=path, mode=common_pb2.EPHEMERAL,
                                     session_id=opened.session_id),
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "SESSION_EXPIRED",
    )
