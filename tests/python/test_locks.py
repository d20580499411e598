"""Locks and elections from Python, through stubs generated from proto/ at test time (run.sh).

Checks, against a real batond at $BATON_ADDR:
  * Acquire grants a free lock with a fencing token; TryAcquire on a held lock fails with
    FAILED_PRECONDITION / LOCK_HELD (ErrorInfo in grpc-status-details-bin); Inspect shows the
    holder; ValidateFence and a Multi with check_fence accept the holder's token; Release by
    another session is PERMISSION_DENIED / NOT_OWNER; after Release the lock is free and the
    old token no longer passes check_fence (BAD_FENCE).
  * Campaign wins an empty election; Leader reports it; Observe streams it; Proclaim updates
    the value; Resign ends it; Proclaim with the old term is BAD_FENCE.
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
from baton.v1 import elections_pb2, elections_pb2_grpc
from baton.v1 import locks_pb2, locks_pb2_grpc
from baton.v1 import sessions_pb2, sessions_pb2_grpc
from baton.v1 import znodes_pb2, znodes_pb2_grpc

ADDR = os.environ.get("BATON_ADDR", "127.0.0.1:7420")
TIMEOUT = 10.0  # seconds, per RPC


@pytest.fixture(scope="module")
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
def locks(channel):
    return locks_pb2_grpc.LocksStub(channel)


@pytest.fixture()
def elections(channel):
    return elections_pb2_grpc.ElectionsStub(channel)


@pytest.fixture()
def znodes(channel):
    return znodes_pb2_grpc.ZNodesStub(channel)


@pytest.fixture()
def sessions(channel):
    """Opens sessions on demand and closes them all at the end of the test."""
    stub = sessions_pb2_grpc.SessionsStub(channel)
    opened = []

    def open_session():
        s = stub.Open(sessions_pb2.OpenSessionRequest(timeout_ms=10_000), timeout=TIMEOUT)
        opened.append(s)
        return s

    yield open_session
    for s in opened:
        try:
            stub.Close(
                sessions_pb2.CloseSessionRequest(session_id=s.session_id, secret=s.secret),
                timeout=TIMEOUT,
            )
        except grpc.RpcError:
            pass


def unique(prefix="pylock"):
    return f"/{prefix}-{uuid.uuid4().hex[:12]}"


def expect_error(fn, code, reason):
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    err = ei.value
    assert err.code() == code, f"{err.code()} {err.details()}"
    status = rpc_status.from_call(err)
    assert status is not None, "no grpc-status-details-bin"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.reason == reason, info
            assert info.domain == "baton", info
            return info
    raise AssertionError(f"no ErrorInfo among {[d.type_url for d in status.details]}")


def fenced_set(znodes, lock_node, token, path, data):
    return znodes.Multi(
        znodes_pb2.MultiRequest(
            ops=[
                znodes_pb2.Op(check_fence=znodes_pb2.CheckFenceOp(lock_node=lock_node, token=token)),
                znodes_pb2.Op(set_data=znodes_pb2.SetDataRequest(path=path, data=data, version=-1)),
            ]
        ),
        timeout=TIMEOUT,
    )


def test_acquire_fence_and_release(locks, znodes, sessions):
    path = unique()
    a, b = sessions(), sessions()
    target = unique("pyfenced")
    znodes.Create(znodes_pb2.CreateRequest(path=target, data=b"0"), timeout=TIMEOUT)

    got = locks.Acquire(
        locks_pb2.AcquireRequest(
            path=path, session_id=a.session_id, wait_timeout_ms=5000, data=b"python"
        ),
        timeout=TIMEOUT,
    )
    assert got.lock_node.startswith(path + "/lock-"), got
    assert got.fencing_token > 0

    expect_error(
        lambda: locks.TryAcquire(
            locks_pb2.AcquireRequest(path=path, session_id=b.session_id), timeout=TIMEOUT
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LOCK_HELD",
    )

    state = locks.Inspect(locks_pb2.InspectRequest(path=path), timeout=TIMEOUT)
    assert [h.lock_node for h in state.holders] == [got.lock_node]
    holder = state.holders[0]
    assert holder.session_id == a.session_id
    assert holder.fencing_token == got.fencing_token
    assert holder.mode == locks_pb2.EXCLUSIVE
    assert holder.data == b"python"
    assert len(state.waiters) == 0

    valid = locks.ValidateFence(
        locks_pb2.ValidateFenceRequest(lock_node=got.lock_node, fencing_token=got.fencing_token),
        timeout=TIMEOUT,
    )
    assert valid.valid
    r = fenced_set(znodes, got.lock_node, got.fencing_token, target, b"1")
    assert r.succeeded, r

    expect_error(
        lambda: locks.Release(
            locks_pb2.ReleaseRequest(lock_node=got.lock_node, session_id=b.session_id),
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_OWNER",
    )
    locks.Release(
        locks_pb2.ReleaseRequest(lock_node=got.lock_node, session_id=a.session_id),
        timeout=TIMEOUT,
    )

    stale = fenced_set(znodes, got.lock_node, got.fencing_token, target, b"stale")
    assert not stale.succeeded
    assert stale.failed_op_index == 0
    assert stale.results[0].error.reason == "BAD_FENCE", stale
    assert znodes.GetData(znodes_pb2.GetDataRequest(path=target), timeout=TIMEOUT).data == b"1"

    again = locks.TryAcquire(
        locks_pb2.AcquireRequest(path=path, session_id=b.session_id, mode=locks_pb2.SHARED),
        timeout=TIMEOUT,
    )
    assert again.fencing_token > got.fencing_token
    locks.Release(
        locks_pb2.ReleaseRequest(lock_node=again.lock_node, session_id=b.session_id),
        timeout=TIMEOUT,
    )


def test_acquire_times_out_with_deadline_exceeded(locks, sessions):
    path = unique()
    a, b = sessions(), sessions()
    locks.Acquire(locks_pb2.AcquireRequest(path=path, session_id=a.session_id), timeout=TIMEOUT)
    expect_error(
        lambda: locks.Acquire(
            locks_pb2.AcquireRequest(path=path, session_id=b.session_id, wait_timeout_ms=200),
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
    )
    deadline = time.monotonic() + TIMEOUT
    while True:
        state = locks.Inspect(locks_pb2.InspectRequest(path=path), timeout=TIMEOUT)
        if len(state.waiters) == 0:
            break
        assert time.monotonic() < deadline, f"the timed-out waiter is still queued: {state}"
        time.sleep(0.02)
    assert len(state.holders) == 1


class Observer:
    """Reads an Observe stream in a thread; next() returns the next leader with a deadline."""

    def __init__(self, stub, path):
        self._items = queue.Queue()
        self._call = stub.Observe(elections_pb2.ObserveRequest(path=path))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for item in self._call:
                self._items.put(item)
        except grpc.RpcError as e:
            self._items.put(e)

    def next(self, timeout=TIMEOUT):
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"Observe reported nothing within {timeout} s") from None
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        self._call.cancel()


def test_campaign_leader_observe_proclaim_resign(elections, sessions):
    path = unique("pyelect")
    observer = Observer(elections, path)
    try:
        first = observer.next()
        assert not first.has_leader

        s = sessions()
        won = elections.Campaign(
            elections_pb2.CampaignRequest(
                path=path, session_id=s.session_id, value=b"py:1", wait_timeout_ms=5000
            ),
            timeout=TIMEOUT,
        )
        assert won.leader_node.startswith(path + "/lock-")
        assert won.term > 0

        leader = elections.Leader(elections_pb2.LeaderRequest(path=path), timeout=TIMEOUT)
        assert leader.has_leader
        assert (leader.leader_node, leader.term) == (won.leader_node, won.term)
        assert leader.value == b"py:1" and leader.session_id == s.session_id

        seen = observer.next()
        assert (seen.has_leader, seen.term, seen.value) == (True, won.term, b"py:1")

        elections.Proclaim(
            elections_pb2.ProclaimRequest(leader_node=won.leader_node, term=won.term, value=b"py:2"),
            timeout=TIMEOUT,
        )
        seen = observer.next()
        assert (seen.term, seen.value) == (won.term, b"py:2")

        elections.Resign(
            elections_pb2.ResignRequest(leader_node=won.leader_node, session_id=s.session_id),
            timeout=TIMEOUT,
        )
        seen = observer.next()
        assert not seen.has_leader
        expect_error(
            lambda: elections.Proclaim(
                elections_pb2.ProclaimRequest(
                    leader_node=won.leader_node, term=won.term, value=b"late"
                ),
                timeout=TIMEOUT,
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "BAD_FENCE",
        )
    finally:
        observer.close()
