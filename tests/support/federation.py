"""Two sites on one machine, MirrorMaker 2 between them (issue 16, "Sites and federation").

The owner site ("league") is the session broker with the session gateway; the remote site
("region") is a second embedded broker with its own home and gateway, which reaches the
league's gateway through a LinkProxy (the site link that tests cut). Brokers, gateways and the
MirrorMaker JVM are what cost time, so the world is built once and shared by every test module
that asks for it (``tests/integration/conftest.py``: the ``sites`` fixture).

Each module shares its own topic(s) into it (:meth:`TwoSites.share`) and makes its own region
department with an agreement at the owner (:meth:`TwoSites.region_department`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.client import ExchangeClient
from exchange.federation.link import SiteLink
from exchange.federation.sites import Federation
from exchange.kafka.broker import LocalBroker
from exchange.kafka.client import KafkaAdapter
from exchange.kafka.port import InRecord
from exchange.kafka.security import KafkaSecurity
from tests.support.gateway import ThreadGateway
from tests.support.kafka import register_security, security_for
from tests.support.linkproxy import LinkProxy
from tests.support.scenario import Scenario, new_client

ROOT = Path(__file__).resolve().parents[2]
WITNESS_S = 2.0  # the region asks the league to cosign its checkpoints this often


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``exchange federation ARGS`` on ``home`` (a subprocess, as an admin would run it)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    full = base | {"EXCHANGE_HOME": str(home), "PYTHONPATH": str(ROOT)} | (env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "federation", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@dataclass
class TwoSites:
    league_gateway: ThreadGateway
    league_admin: ExchangeClient
    league_env: dict[str, str]
    league_bootstrap: str
    region_home: Path
    region_bootstrap: str
    region_security: KafkaSecurity
    region_gateway: ThreadGateway
    link: LinkProxy  # the site link: the region's gateway -> the league's gateway
    workdir: Path
    shared: list[str] = field(default_factory=list)

    @property
    def league_home(self) -> Path:
        return self.league_gateway.home

    def league(self, *args: str) -> str:
        return cli(self.league_home, *args, env=self.league_env)

    def region(self, *args: str) -> str:
        return cli(self.region_home, *args)

    def status(self) -> dict[str, Any]:
        """``exchange federation status --json`` at the region."""
        out: dict[str, Any] = json.loads(
            subprocess.run(
                [sys.executable, "-m", "cli.main", "federation", "status", "--json"],
                env={k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
                | {"EXCHANGE_HOME": str(self.region_home), "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            ).stdout
        )
        return out

    def share(self, topic: str) -> dict[str, Any]:
        """The league shares ``topic`` to the region, the region accepts (its MirrorMaker
        restarts on the new configuration); returns the grant."""
        grant_file = self.workdir / f"grant-{len(self.shared)}.json"
        self.league("share", topic, "--to", "region", "--grant-file", str(grant_file))
        grant: dict[str, Any] = json.loads(grant_file.read_text())
        self.region("accept", topic, "--from", "league", "--grant-file", str(grant_file))
        self.shared.append(topic)
        return grant

    def region_department(
        self,
        s: Scenario,
        fields: list[str],
        purpose: str = "regional health statistics",
        name: str = "rhealth",
    ) -> tuple[ExchangeClient, str]:
        """A department at both sites reading ``s.topic`` at the region under an agreement
        for ``fields``: at the league its client holds the region site's key
        (private_key_jwt); it asks the league for the agreement over the site link, and the
        league's steward approves. Returns (its subscriber at the region, agreement id)."""
        dept = f"{name}-{s.topic.split('.')[0][-6:]}"
        self.league_admin.call(
            "POST", "/v1/departments", json={"id": dept, "name": dept.title(), "level": "city"}
        )
        owner_side = new_client(
            self.league_admin, self.league_gateway.url, dept, ["subscriber", "registry:read"]
        )
        jwk = json.loads(self.region("identity", "--jwk"))
        self.league_admin.call(
            "PUT", f"/v1/departments/{dept}/clients/{owner_side.client_id}/jwk", json={"jwk": jwk}
        )
        owner_side.close()
        self.region("link", dept, "--site", "league", "--client-id", owner_side.client_id)
        with self.region_gateway.admin() as region_admin:
            region_admin.call(
                "POST", "/v1/departments", json={"id": dept, "name": dept.title(), "level": "city"}
            )
            reader = new_client(region_admin, self.region_gateway.url, dept, ["subscriber"])
        site_link = SiteLink(
            self.link.url(), owner_side.client_id, Federation(self.region_home).private_key()
        )
        try:
            ag = site_link.call(
                "POST",
                "/v1/agreements",
                json={
                    "topic": s.topic,
                    "fields": fields,
                    "purpose": purpose,
                    "legal_basis": "Regulation on government data sharing, art. 12",
                    "valid_from": "2020-01-01T00:00:00Z",
                    "valid_until": "2099-01-01T00:00:00Z",
                },
            )
        finally:
            site_link.close()
        s.steward.call("POST", f"/v1/agreements/{ag['id']}/approve", json={})
        wait_replicated(reader, s.topic, str(ag["id"]))
        return reader, str(ag["id"])


def wait_replicated(reader: ExchangeClient, topic: str, agreement: str) -> None:
    """Until the region knows the approved agreement (the league's replicated state, copied by
    MirrorMaker): before that the region delivers nothing of the topic (fail closed)."""
    deadline = time.monotonic() + 90
    while True:
        r = reader.request("GET", f"/v1/catalog/{topic}")
        known = (r.json().get("agreements") or []) if r.status_code == 200 else []
        if any(a["id"] == agreement and a["status"] == "approved" for a in known):
            return
        assert time.monotonic() < deadline, f"agreement {agreement} not replicated: {r.text}"
        time.sleep(0.3)


@contextmanager
def two_sites(gateway: ThreadGateway, admin: ExchangeClient, workdir: Path) -> Iterator[TwoSites]:
    """The league (``gateway`` and its broker) and a region site, MirrorMaker 2 running."""
    league_bootstrap = gateway.settings.kafka_bootstrap
    assert league_bootstrap is not None
    league_env = {"EXCHANGE_KAFKA_BOOTSTRAP": league_bootstrap} | security_for(
        league_bootstrap
    ).as_env()
    region_home = workdir / "region"
    broker = LocalBroker(region_home, heap_mb=384)
    st = broker.start()
    register_security(st.bootstrap, broker.security())
    link = LinkProxy("127.0.0.1", gateway.port)
    region_gw: ThreadGateway | None = None
    try:
        link.start()
        league_id = cli(gateway.home, "init", "league", env=league_env).strip()
        region_id = cli(region_home, "init", "region").strip()
        cli(gateway.home, "sites", "add", "region", "http://127.0.0.1:1", region_id, env=league_env)
        cli(region_home, "sites", "add", "league", link.url(), league_id)
        cli(region_home, "start")
        # loopback webhooks: a test's receiver listens on 127.0.0.1
        region_gw = ThreadGateway(
            region_home, st.bootstrap, witness_interval_s=WITNESS_S, webhook_allow_loopback=True
        ).start()
        # the league witnesses the region's log: it needs the region's audit key (the region's
        # gateway created it); until then its scheduled requests are refused
        audit_key = cli(region_home, "identity", "--audit-key").strip()
        cli(
            gateway.home,
            *("sites", "add", "region", "http://127.0.0.1:1", region_id, "--audit-key", audit_key),
            env=league_env,
        )
        yield TwoSites(
            gateway,
            admin,
            league_env,
            league_bootstrap,
            region_home,
            st.bootstrap,
            broker.security(),
            region_gw,
            link,
            workdir,
        )
    finally:
        cli(region_home, "stop")
        if region_gw is not None:
            region_gw.stop()
        link.stop()
        broker.stop()


# -- reading both clusters ------------------------------------------------------------------
def read_all(bootstrap: str, security: KafkaSecurity, topic: str, want: int) -> list[InRecord]:
    adapter = KafkaAdapter(bootstrap, client_id="test-federation", security=security)
    try:
        reader = adapter.reader(topic)
        try:
            reader.seek({})
            got: list[InRecord] = []
            deadline = time.monotonic() + 90
            while len(got) < want and time.monotonic() < deadline:
                got += reader.poll(timeout_ms=500)
            return got
        finally:
            reader.close()
    finally:
        adapter.close()


def wait_topic(bootstrap: str, security: KafkaSecurity, topic: str, timeout: float = 90) -> None:
    adapter = KafkaAdapter(bootstrap, client_id="test-federation", security=security)
    try:
        deadline = time.monotonic() + timeout
        while topic not in adapter.list_topics():
            assert time.monotonic() < deadline, f"{topic} never appeared at the region"
            time.sleep(0.5)
    finally:
        adapter.close()


def remote_page(
    reader: ExchangeClient, topic: str, partition: int, offset: int, limit: int = 500
) -> dict[str, Any]:
    """One page of a mirrored topic as the region serves it to ``reader``."""
    body: dict[str, Any] = reader.call(
        "GET",
        f"/v1/federation/topics/{topic}/records",
        params={"partition": partition, "offset": offset, "limit": limit},
    )
    return body
