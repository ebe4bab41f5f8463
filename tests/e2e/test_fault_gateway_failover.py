"""One of two gateway instances over one PostgreSQL control plane is SIGKILLed while clients
publish and consume continuously through both; the clients fail over to the survivor (the
same Idempotency-Key retried on the other URL). Nothing acknowledged is lost, no key stays
stuck (the survivor resolves the dead one's in-progress claims), delivery resumes once the
broker aborts the dead instance's open transaction, and the audit log verifies from Kafka."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.test_audit_tamper import verify
from tests.integration.test_registry_postgres import pg_url  # noqa: F401 - the cluster fixture
from tests.support.gateway import GatewayProcess
from tests.support.load import load_for
from tests.support.scenario import build

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

LONG = os.environ.get("EXCHANGE_LONG_TESTS") == "1"
# The dead instance's slot is never restarted: its open transaction ends at this timeout.
TX_TIMEOUT_MS = 10000


def test_one_of_two_gateways_dies_clients_fail_over_nothing_lost(
    tmp_path: Path,
    kafka_bootstrap: str,
    pg_url: str,  # noqa: F811
) -> None:
    home = tmp_path / "home"  # the keystore and master key, shared as a volume would be
    db_env = {"EXCHANGE_DATABASE_URL": pg_url}
    env = {
        **db_env,
        "EXCHANGE_PUBLIC_URL": "http://exchange.test",  # one issuer behind a load balancer
        "EXCHANGE_IDEMPOTENCY_RESOLVE_AFTER_S": "3",
        "EXCHANGE_KAFKA_TRANSACTION_TIMEOUT_MS": str(TX_TIMEOUT_MS),
    }
    a = GatewayProcess(home, kafka_bootstrap, extra_env=env).start()
    b = GatewayProcess(home, kafka_bootstrap, extra_env=env).start()
    try:
        with a.admin() as admin:
            s = build(admin, a.url)
        load = load_for(s, [a.url, b.url], publishers=4).start()
        try:
            load.wait_acked(60 if LONG else 20, 60)
            assert a.proc is not None
            a.proc.send_signal(signal.SIGKILL)  # mid-flood: requests in every stage on A
            killed = time.monotonic()
            a.proc.wait(10)
            before = len(load.acked)
            load.wait_acked(before + (200 if LONG else 20), 120)  # through B alone
            load.drain(90)
        finally:
            load.close()
        r = load.report(stall_from=killed)
        print(f"gateway SIGKILL, failover to the other instance: {r}")
        s.close()
    finally:
        a.stop()
        b.stop()
    assert r["failovers"] > 0, r
    assert not any(k.startswith("500") for k in r["statuses"]), r
    assert r["lost"] == 0 and r["stuck_keys"] == 0 and r["unacknowledged_delivered"] == 0, r
    code, out = verify(home, kafka_bootstrap, "--source", "kafka", env=db_env)
    assert code == 0, out
