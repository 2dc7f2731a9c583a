"""Two gateway instances (``mitmdump -s addons/gateway.py``) behind a real HAProxy, sharing one real
redis-server as the limits ledger, hold one budget as if they were one instance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.gateway import DemoVault, Gateway, start_gateway
from tests.helpers.haproxy import HAPROXY, haproxy
from tests.helpers.haproxy import SKIP_REASON as NO_HAPROXY
from tests.helpers.limits import add_key, concurrent_streams, key_rows, stream_call, wait_settled
from tests.helpers.redis import REDIS_SERVER, redis_server
from tests.helpers.redis import SKIP_REASON as NO_REDIS

pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason=NO_REDIS),
    pytest.mark.skipif(HAPROXY is None, reason=NO_HAPROXY),
]

TEXT = "budget check"
MAX_OUT = 32


@pytest.fixture(scope="module")
def cluster(module_tmp: Path, vault: DemoVault) -> Iterator[tuple[str, str, list[Gateway]]]:
    """(HAProxy URL, redis URL, the two gateways)."""
    with redis_server(module_tmp / "redis") as redis_url:
        opts = {"codexgate_ledger": redis_url, "codexgate_reservation_ttl": "60"}
        gws: list[Gateway] = []
        try:
            for name in ("gw1", "gw2"):
                gws.append(start_gateway(module_tmp, vault, traces=module_tmp / f"{name}-traces", opts=opts, name=name))
            with haproxy(module_tmp / "haproxy", [g.port for g in gws]) as url:
                yield url, redis_url, gws
        finally:
            for g in gws:
                g.stop()


def test_two_instances_behind_haproxy_hold_one_budget(cluster, vault: DemoVault) -> None:
    url, redis_url, gws = cluster
    traces = [g.traces for g in gws]
    free = add_key(vault, "calibration", "cal")
    assert stream_call(url, free.plain, TEXT, MAX_OUT).ok
    call_cost = key_rows(traces, free.key_id, 1)[0]["cost_usd"]
    budget = 10.5 * call_cost
    k = add_key(vault, "shared", "kate", lambda kid: {f"key:{kid}": {"budget_usd": budget, "period": "day"}})
    results = concurrent_streams(url, k.plain, 50, TEXT, MAX_OUT)
    served = [r for r in results if r.ok]
    assert served
    for r in results:
        if not r.ok:
            assert r.status == 429 and r.body["error"]["type"] == "usage_limit_reached", r
            assert r.body["error"]["level"] == f"key:{k.key_id}"
    # then one after another until refused: the rest of the budget, across both instances
    sequential = 0
    for _ in range(15):
        sequential += 1
        if not stream_call(url, k.plain, TEXT, MAX_OUT).ok:
            break
    else:
        pytest.fail("the budget was never exhausted")
    rows = key_rows(traces, k.key_id, 50 + sequential)
    by_instance = {r["gateway_instance"] for r in rows}
    assert len(by_instance) == 2, "HAProxy must have sent calls to both instances"
    ok_rows = [r for r in rows if r["outcome"] == "ok"]
    assert {r["gateway_instance"] for r in ok_rows} == by_instance or len(ok_rows) < 2
    total = sum(r["cost_usd"] for r in ok_rows)
    assert len(ok_rows) >= 8
    assert total <= budget + max(r["cost_usd"] for r in ok_rows) + 1e-12
    # the shared ledger equals the traces of both instances
    (status,) = wait_settled(vault, k.key_id, redis_url)
    assert status.reserved_usd == pytest.approx(0.0, abs=1e-12)
    assert status.spent_usd == pytest.approx(total, rel=1e-9, abs=1e-12)


def test_rpm_is_shared_by_both_instances(cluster, vault: DemoVault) -> None:
    url, _, gws = cluster
    k = add_key(vault, "shared-rpm", "liam", lambda kid: {f"key:{kid}": {"rpm": 4}})
    t0 = time.time()
    results = [stream_call(url, k.plain, TEXT, MAX_OUT) for _ in range(6)]
    assert [r.ok for r in results] == [True] * 4 + [False] * 2
    for r in results[4:]:
        assert r.status == 429 and r.headers["x-ratelimit-limit-requests"] == "4"
        assert 0 < int(r.headers["retry-after"]) <= 61 - int(time.time() - t0) + 1
    rows = key_rows([g.traces for g in gws], k.key_id, 6)
    assert len({r["gateway_instance"] for r in rows}) == 2
