"""Operating batond from the tools operators use: the metrics port at $BATON_TEST_METRICS
scraped as Prometheus would (OpenMetrics text), the /livez and /readyz probes, and the gRPC
health service as a Python gRPC client (or a load balancer) calls it.
"""

import os
import time
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from baton.v1 import znodes_pb2, znodes_pb2_grpc

ADDR = os.environ.get("BATON_ADDR", "127.0.0.1:7420")
METRICS = os.environ.get("BATON_TEST_METRICS", "127.0.0.1:7422")


def get(path):
    try:
        with urllib.request.urlopen(f"http://{METRICS}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def samples(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def wait_ready():
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if get("/readyz")[0] == 200:
            return
        time.sleep(0.1)
    pytest.fail("batond not ready within 30 s")


def test_metrics_are_openmetrics_text_and_count_errors_by_code():
    wait_ready()
    ch = grpc.insecure_channel(ADDR)
    stub = znodes_pb2_grpc.ZNodesStub(ch)
    key = ('grpc_server_handled_total{grpc_service="baton.v1.ZNodes",'
           'grpc_method="GetData",grpc_type="unary",grpc_code="NotFound"}')
    before = samples(get("/metrics")[2]).get(key, 0.0)
    with pytest.raises(grpc.RpcError) as e:
        stub.GetData(znodes_pb2.GetDataRequest(path=f"/py-missing-{uuid.uuid4().hex[:8]}"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    status, ctype, body = get("/metrics")
    assert status == 200
    assert ctype.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")
    s = samples(body)
    assert s[key] == before + 1
    assert s["baton_server_has_leader"] == 1
    assert s["baton_server_is_leader"] == 1
    assert s["baton_znodes"] >= 1
    ch.close()


def test_probes_and_grpc_health_agree_on_a_ready_member():
    wait_ready()
    status, _, body = get("/livez?verbose")
    assert status == 200 and "[+]raft_running ok" in body
    status, _, body = get("/readyz?verbose")
    assert status == 200 and "[+]linearizable_read ok" in body
    assert get("/readyz/no_such_check")[0] == 404
    ch = grpc.insecure_channel(ADDR)
    health = health_pb2_grpc.HealthStub(ch)
    deadline = time.monotonic() + 10
    while True:
        r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        if r.status == health_pb2.HealthCheckResponse.SERVING or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status == health_pb2.HealthCheckResponse.SERVING
    r = health.Check(health_pb2.HealthCheckRequest(service="baton.v1.ZNodes"), timeout=5)
    assert r.status == health_pb2.HealthCheckResponse.SERVING
    ch.close()
