"""Writes applied at most once from Python: a small client that numbers its writes.

The request id travels in request metadata (baton-client-id, baton-seq,
baton-first-incomplete). A write whose outcome is unknown (no answer in time, a broken
connection, OUTCOME_UNKNOWN, UNAVAILABLE) is sent again with the same id until its deadline;
the server answers a copy of a write it already applied with the original result.

Checks, against a real batond at $BATON_ADDR:
  * sequential creates whose first attempt is cut off by a tiny deadline (the write may or
    may not have been applied) and then retried: exactly one node per acknowledged create;
  * a versioned set retried after its answer was lost gets its own Stat, not BAD_VERSION;
  * a create that failed with NODE_EXISTS is answered NODE_EXISTS again, even after the node
    was deleted; a copy below the acknowledged mark is STALE_REQUEST; malformed ids are
    refused with BAD_ARGUMENTS.
"""

import random
import threading
import time

import grpc
import pytest

from baton.v1 import common_pb2
from baton.v1 import znodes_pb2, znodes_pb2_grpc

# The helpers and the channel fixture of the CRUD tests (same server, same conventions).
from test_client import TIMEOUT, channel, expect_error, unique  # noqa: F401

# Outcome unknown or not applied: send again with the same id. (A server whose own deadline
# for the call passed answers CANCELLED "Timeout expired"; the write may still be applied.)
RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


class OnceClient:
    """Numbers its writes and retries them with the same id until `deadline` seconds pass."""

    def __init__(self, stub, deadline=10.0):
        self.stub = stub
        self.deadline = deadline
        self.client_id = random.getrandbits(63) + 1
        self.next_seq = 1
        self.in_flight = set()
        self.lock = threading.Lock()

    def _start(self):
        with self.lock:
            seq = self.next_seq
            self.next_seq += 1
            self.in_flight.add(seq)
            return seq

    def _metadata(self, seq):
        with self.lock:
            first = min(self.in_flight) if self.in_flight else seq
        return (
            ("baton-client-id", str(self.client_id)),
            ("baton-seq", str(seq)),
            ("baton-first-incomplete", str(min(first, seq))),
        )

    def call(self, method, request, first_attempt_timeout=None, seq=None):
        """Sends `request` through `method` until answered; returns (response, attempts)."""
        seq = seq if seq is not None else self._start()
        end = time.monotonic() + self.deadline
        attempts = 0
        try:
            while True:
                attempts += 1
                left = end - time.monotonic()
                timeout = min(left, 2.0)
                if attempts == 1 and first_attempt_timeout is not None:
                    timeout = first_attempt_timeout
                try:
                    return method(request, timeout=timeout, metadata=self._metadata(seq)), attempts
                except grpc.RpcError as e:
                    if e.code() not in RETRY or time.monotonic() >= end:
                        raise
                    time.sleep(0.01)
        finally:
            with self.lock:
                self.in_flight.discard(seq)


@pytest.fixture()
def znodes(channel):  # noqa: F811 (the imported fixture)
    return znodes_pb2_grpc.ZNodesStub(channel)


def test_sequential_creates_cut_off_and_retried_apply_once(znodes):
    parent = unique("once")
    znodes.Create(znodes_pb2.CreateRequest(path=parent), timeout=TIMEOUT)
    client = OnceClient(znodes)
    acked, retried = [], 0
    for i in range(60):
        req = znodes_pb2.CreateRequest(
            path=f"{parent}/n-", data=f"item-{i}".encode(), mode=common_pb2.PERSISTENT_SEQUENTIAL
        )
        if i % 4 == 0:
            # The answer is lost after the server applied the write: the same write again.
            seq = client._start()
            client.call(znodes.Create, req, seq=seq)
            resp, _ = client.call(znodes.Create, req, seq=seq)
            retried += 1
        else:
            # A first attempt this short may end (DEADLINE_EXCEEDED, CANCELLED) before or
            # after the server applied it.
            resp, attempts = client.call(
                znodes.Create, req, first_attempt_timeout=random.choice([0.0002, 0.0005, 0.001])
            )
            retried += attempts > 1
        acked.append((resp.path, resp.stat.czxid))
    kids = znodes.GetChildren(
        znodes_pb2.GetChildrenRequest(path=parent, include_stats=True), timeout=TIMEOUT
    )
    assert len(kids.children) == len(acked), (len(kids.children), len(acked), retried)
    assert sorted(p for p, _ in acked) == sorted(f"{parent}/{c}" for c in kids.children)
    # Every answer, retried or not, is the write's own: its path and czxid.
    by_name = {f"{parent}/{c}": s.czxid for c, s in zip(kids.children, kids.stats)}
    for p, czxid in acked:
        assert by_name[p] == czxid


def test_a_retried_versioned_set_gets_its_own_stat_not_bad_version(znodes):
    path = unique("once")
    znodes.Create(znodes_pb2.CreateRequest(path=path, data=b"0"), timeout=TIMEOUT)
    client = OnceClient(znodes)
    seq = client._start()
    req = znodes_pb2.SetDataRequest(path=path, data=b"1", version=0)
    first, _ = client.call(znodes.SetData, req, seq=seq)
    # The answer was "lost": the same write is sent again.
    again, _ = client.call(znodes.SetData, req, seq=seq)
    assert again.stat == first.stat
    assert again.header.zxid == first.header.zxid
    got = znodes.GetData(znodes_pb2.GetDataRequest(path=path), timeout=TIMEOUT)
    assert got.stat.version == 1 and got.data == b"1"


def test_errors_are_remembered_stale_copies_and_bad_ids_refused(znodes):
    path = unique("once")
    znodes.Create(znodes_pb2.CreateRequest(path=path), timeout=TIMEOUT)
    client = OnceClient(znodes)
    seq = client._start()
    req = znodes_pb2.CreateRequest(path=path)
    expect_error(
        lambda: znodes.Create(req, timeout=TIMEOUT, metadata=client._metadata(seq)),
        grpc.StatusCode.ALREADY_EXISTS,
        "NODE_EXISTS",
    )
    znodes.Delete(znodes_pb2.DeleteRequest(path=path, version=-1), timeout=TIMEOUT)
    expect_error(
        lambda: znodes.Create(req, timeout=TIMEOUT, metadata=client._metadata(seq)),
        grpc.StatusCode.ALREADY_EXISTS,
        "NODE_EXISTS",
    )
    client.in_flight.discard(seq)
    # The next write acknowledges `seq`; a late copy of it is stale and creates nothing.
    client.call(znodes.Create, znodes_pb2.CreateRequest(path=unique("once")))
    info = expect_error(
        lambda: znodes.Create(req, timeout=TIMEOUT, metadata=client._metadata(seq)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "STALE_REQUEST",
    )
    assert info.metadata.get("seq") == str(seq), info
    ex = znodes.Exists(znodes_pb2.ExistsRequest(path=path), timeout=TIMEOUT)
    assert not ex.exists

    for md in (
        (("baton-client-id", "0"), ("baton-seq", "1")),
        (("baton-client-id", "7"),),
        (("baton-client-id", "7"), ("baton-seq", "x")),
        (("baton-client-id", "7"), ("baton-seq", "2"), ("baton-first-incomplete", "3")),
    ):
        expect_error(
            lambda md=md: znodes.Create(req, timeout=TIMEOUT, metadata=md),
            grpc.StatusCode.INVALID_ARGUMENT,
            "BAD_ARGUMENTS",
        )
