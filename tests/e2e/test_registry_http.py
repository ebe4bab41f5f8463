"""The /registry REST API over HTTP: Confluent paths, bodies, codes; auth; CLI; restarts."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app as cli
from exchange.client import ExchangeClient
from tests.conftest import make_client, make_department
from tests.support.gateway import ThreadGateway

pytestmark = pytest.mark.e2e
V = "application/vnd.schemaregistry.v1+json"


def compact(text: str) -> str:
    return json.dumps(json.loads(text), separators=(",", ":"))


def person(*extra: dict[str, Any], name_class: str = "sensitive") -> str:
    fields = [{"name": "name", "type": "string", "classification": name_class}, *extra]
    return json.dumps({"type": "record", "name": "Person", "fields": fields})


class Reg:
    """Raw HTTP with HTTP Basic, so every request shows exactly what goes over the wire."""

    def __init__(self, url: str, client: ExchangeClient) -> None:
        self.http = httpx.Client(
            base_url=f"{url}/registry", auth=(client.client_id, client._secret), timeout=30
        )

    def __call__(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {"Content-Type": kw.pop("content_type", V)}
        content = json.dumps(body) if body is not None else None
        return self.http.request(method, path, content=content, headers=headers, **kw)


@pytest.fixture
def dept(admin: ExchangeClient, unique: str) -> str:
    make_department(admin, f"rh-{unique}")
    return f"rh-{unique}"


@pytest.fixture
def rw(gateway: ThreadGateway, admin: ExchangeClient, dept: str) -> Reg:
    return Reg(
        gateway.url, make_client(admin, gateway.url, dept, ["registry:read", "registry:write"])
    )


def test_auth(gateway: ThreadGateway, admin: ExchangeClient, dept: str) -> None:
    anon = httpx.get(f"{gateway.url}/registry/subjects")
    assert anon.status_code == 401 and anon.json()["error_code"] == 401
    bad = httpx.get(f"{gateway.url}/registry/subjects", auth=("nobody", "wrong"))
    assert bad.status_code == 401 and bad.json()["error_code"] == 401
    bogus = httpx.get(
        f"{gateway.url}/registry/subjects", headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert bogus.status_code == 401
    ro = make_client(admin, gateway.url, dept, ["registry:read"])
    r = Reg(gateway.url, ro)
    assert r("GET", "/subjects").status_code == 200
    denied = r("POST", "/subjects/x-value/versions", {"schema": person()})
    assert denied.status_code == 403 and denied.json()["error_code"] == 40301
    assert 'scope="registry:write"' in denied.headers["www-authenticate"]
    publisher = make_client(admin, gateway.url, dept, ["publisher"])
    assert Reg(gateway.url, publisher)("GET", "/subjects").status_code == 403
    # Bearer tokens from /oauth/token work as well (the SDK fetches one).
    assert ro.request("GET", "/registry/schemas/types").json() == ["AVRO"]


def test_confluent_paths(rw: Reg, dept: str) -> None:
    s = f"{dept}.paths-value"
    first = rw("POST", f"/subjects/{s}/versions", {"schema": person()})
    assert first.status_code == 200 and first.headers["content-type"].startswith(V)
    sid = first.json()["id"]
    # any of the accepted content types
    for ctype in ("application/json", "application/octet-stream"):
        again = rw("POST", f"/subjects/{s}/versions", {"schema": person()}, content_type=ctype)
        assert again.json() == {"id": sid}
    v2 = person({"name": "age", "type": "int", "default": 0})
    sid2 = rw("POST", f"/subjects/{s}/versions", {"schema": v2}).json()["id"]
    assert s in rw("GET", "/subjects").json()
    assert rw("GET", f"/subjects/{s}/versions").json() == [1, 2]
    latest = rw("GET", f"/subjects/{s}/versions/latest").json()
    assert latest == {"subject": s, "version": 2, "id": sid2, "schema": compact(v2)}
    assert rw("GET", f"/subjects/{s}/versions/1/schema").json() == json.loads(person())
    # the text as Confluent stores it: Java Avro's compact form
    assert rw("GET", f"/schemas/ids/{sid}").json() == {"schema": compact(person())}
    assert rw("GET", f"/schemas/ids/{sid}/versions").json() == [{"subject": s, "version": 1}]
    looked = rw("POST", f"/subjects/{s}", {"schema": person()}).json()
    assert (looked["version"], looked["id"]) == (1, sid)
    assert (
        rw("POST", f"/subjects/{s}", {"schema": person(name_class="secret")}).json()["error_code"]
        == 40403
    )
    fields = rw("GET", f"/subjects/{s}/versions/2/fields").json()
    assert [(f["path"], f["classification"]) for f in fields] == [
        ("name", "sensitive"),
        ("age", "internal"),
    ]
    assert rw("GET", f"/subjects/{s}/versions/9").json()["error_code"] == 40402
    assert rw("GET", f"/subjects/{s}/versions/zero").json()["error_code"] == 42202
    assert rw("GET", "/subjects/none-such/versions").json()["error_code"] == 40401
    assert rw("GET", "/schemas/ids/987654").json()["error_code"] == 40403
    assert rw("GET", "/no/such/path").json() == {"error_code": 404, "message": "HTTP 404 Not Found"}
    assert rw("GET", "/contexts").json() == ["."]
    prim = rw("POST", f"/subjects/{s}-key/versions", {"schema": '"string"'}).json()["id"]
    assert rw("GET", f"/subjects/{s}-key/versions/1/schema").json() == "string"
    assert rw("GET", f"/schemas/ids/{prim}/schema").text == '"string"'
    huge = rw("POST", f"/subjects/{s}/versions", {"schema": " " * (5 * 1024 * 1024)})
    assert huge.status_code == 413  # the gateway's body limit, before the registry parses
    assert huge.json()["error_code"] == 41301


def test_errors_compatibility_and_classification(rw: Reg, admin: ExchangeClient, dept: str) -> None:
    s = f"{dept}.compat-value"
    bad = rw("POST", f"/subjects/{s}/versions", {"schema": '{"type": "record", "fields": 1}'})
    assert bad.status_code == 422 and bad.json()["error_code"] == 42201
    assert "Invalid schema" in bad.json()["message"]
    assert rw("POST", f"/subjects/{s}/versions", {"nope": 1}).json()["error_code"] == 42201
    rw("POST", f"/subjects/{s}/versions", {"schema": person()})
    breaking = person({"name": "age", "type": "int"})
    check = rw(
        "POST", f"/compatibility/subjects/{s}/versions/latest?verbose=true", {"schema": breaking}
    )
    assert check.json()["is_compatible"] is False
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in check.json()["messages"][0]
    assert rw("POST", f"/compatibility/subjects/{s}/versions/1", {"schema": person()}).json() == {
        "is_compatible": True
    }
    refused = rw("POST", f"/subjects/{s}/versions", {"schema": breaking})
    assert refused.status_code == 409 and refused.json()["error_code"] == 40901
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in refused.json()["message"]
    lowered = rw("POST", f"/subjects/{s}/versions", {"schema": person(name_class="public")})
    assert lowered.status_code == 403 and lowered.json()["error_code"] == 40301
    ok = admin.request(
        "POST", f"/registry/subjects/{s}/versions", json={"schema": person(name_class="public")}
    )
    assert ok.status_code == 200


def test_config_mode_and_delete(rw: Reg, dept: str) -> None:
    s = f"{dept}.cfg-value"
    assert rw("GET", "/config").json()["compatibilityLevel"] in {"BACKWARD", "NONE"}
    assert rw("GET", f"/config/{s}").json()["error_code"] == 40408
    assert rw("GET", f"/config/{s}?defaultToGlobal=true").status_code == 200
    assert rw("PUT", f"/config/{s}", {"compatibility": "full_transitive"}).json() == {
        "compatibility": "FULL_TRANSITIVE"
    }
    assert rw("PUT", f"/config/{s}", {"compatibility": "SIDEWAYS"}).json()["error_code"] == 42203
    assert rw("GET", f"/config/{s}").json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert rw("DELETE", f"/config/{s}").json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert rw("GET", "/mode").json() == {"mode": "READWRITE"}
    assert rw("PUT", f"/mode/{s}", {"mode": "READONLY"}).json() == {"mode": "READONLY"}
    assert rw("PUT", f"/mode/{s}", {"mode": "SLEEPY"}).json()["error_code"] == 42204
    blocked = rw("POST", f"/subjects/{s}/versions", {"schema": person()})
    assert blocked.status_code == 422 and blocked.json()["error_code"] == 42205
    assert rw("DELETE", f"/mode/{s}").json() == {"mode": "READONLY"}
    rw("POST", f"/subjects/{s}/versions", {"schema": person()})
    rw(
        "POST",
        f"/subjects/{s}/versions",
        {"schema": person({"name": "a", "type": "int", "default": 1})},
    )
    assert rw("DELETE", f"/subjects/{s}?permanent=true").json()["error_code"] == 40405
    assert rw("DELETE", f"/subjects/{s}/versions/2").json() == 2
    assert rw("DELETE", f"/subjects/{s}/versions/2").json()["error_code"] == 40406
    assert rw("DELETE", f"/subjects/{s}").json() == [1]
    assert rw("GET", f"/subjects/{s}/versions").json()["error_code"] == 40401
    assert rw("GET", f"/subjects/{s}/versions?deleted=true").json() == [1, 2]
    assert rw("DELETE", f"/subjects/{s}").json()["error_code"] == 40404
    assert rw("DELETE", f"/subjects/{s}?permanent=true").json() == [1, 2]
    assert s not in rw("GET", "/subjects?deleted=true").json()


def test_cli(gateway: ThreadGateway, admin: ExchangeClient, unique: str, tmp_path: Path) -> None:
    creds = ["--url", gateway.url, "--client-id", admin.client_id, "--client-secret", admin._secret]
    s = f"cli-{unique}-value"
    v1, v2 = tmp_path / "v1.avsc", tmp_path / "v2.avsc"
    v1.write_text(person())
    v2.write_text(person({"name": "age", "type": "int"}))
    runner = CliRunner()
    out = runner.invoke(cli, ["schema", "register", s, str(v1), *creds, "-o", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["id"] >= 1
    bad = runner.invoke(cli, ["schema", "check", s, str(v2), *creds])
    assert bad.exit_code == 1 and "READER_FIELD_MISSING_DEFAULT_VALUE" in bad.output
    good = runner.invoke(cli, ["schema", "check", s, str(v1), *creds])
    assert good.exit_code == 0 and "compatible" in good.output
    shown = runner.invoke(cli, ["schema", "show", s, *creds, "--output", "json"])
    assert shown.exit_code == 0, shown.output
    v = json.loads(shown.stdout)
    assert (
        v["version"] == 1
        and {"path": "name", "classification": "sensitive"}.items()
        <= next(f for f in v["fields"] if f["path"] == "name").items()
    )
    table = runner.invoke(cli, ["schema", "show", s, *creds])
    assert re.search(r"name\s+sensitive", table.stdout), table.stdout
    # defaults from $EXCHANGE_HOME/admin-credentials.json
    home = runner.invoke(cli, ["schema", "show", s, "1"], env={"EXCHANGE_HOME": str(gateway.home)})
    assert home.exit_code == 0, home.output
    missing = runner.invoke(cli, ["schema", "show", "no-such-subject", *creds])
    assert missing.exit_code == 1 and "40401" in missing.output


@pytest.mark.slow
def test_restart_and_two_gateways_over_one_database(kafka_bootstrap: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    one = ThreadGateway(home, kafka_bootstrap).start()
    try:
        with one.admin() as a:
            sid = a.call(
                "POST", "/registry/subjects/keep-value/versions", json={"schema": person()}
            )["id"]
    finally:
        one.stop()
    # Two gateway instances over the same control-plane database (same home, same SQLite file).
    one, two = (
        ThreadGateway(home, kafka_bootstrap).start(),
        ThreadGateway(home, kafka_bootstrap).start(),
    )
    try:
        with one.admin() as a, two.admin() as b:
            assert b.call("GET", "/registry/subjects/keep-value/versions/1")["id"] == sid
            a.call("PUT", "/registry/config", json={"compatibility": "NONE"})

            def register(args: tuple[ExchangeClient, int]) -> int:
                client, k = args
                schema = json.dumps(
                    {"type": "record", "name": f"R{k}", "fields": [{"name": "x", "type": "int"}]}
                )
                body = client.call(
                    "POST",
                    f"/registry/subjects/race-{k % 3}-value/versions",
                    json={"schema": schema},
                )
                return int(body["id"])

            with ThreadPoolExecutor(8) as pool:
                ids = list(pool.map(register, [(a if k % 2 else b, k) for k in range(24)]))
            assert len(set(ids)) == 24 and sid not in ids
            total = sum(
                len(a.call("GET", f"/registry/subjects/race-{i}-value/versions")) for i in range(3)
            )
            assert total == 24
    finally:
        one.stop()
        two.stop()
