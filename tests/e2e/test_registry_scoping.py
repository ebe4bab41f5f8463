"""Registry writes are scoped to the subject's department (issue 12, item 2).

Each write route, for (another department's registry:write, the owner's registry:write, admin):
the other department gets 403, nothing changes, and the refusal is in the audit log; the owner
and the admin succeed. Global config and mode are admin-only. A subject that backs a live
topic cannot be deleted permanently. Reads stay open to registry:read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from audit.service import Filters
from exchange.client import ExchangeClient
from tests.conftest import make_client, make_department
from tests.support.gateway import ThreadGateway

pytestmark = pytest.mark.e2e
V1 = "application/vnd.schemaregistry.v1+json"
SCHEMA = json.dumps(
    {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": 0}]}
)
GROWN = json.dumps(
    {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": "int", "default": 0},
            {"name": "b", "type": "int", "default": 1},
        ],
    }
)


def _bearer(request: httpx.Request, client: ExchangeClient) -> httpx.Request:
    request.headers["Authorization"] = f"Bearer {client.token()}"
    return request


class Http:
    def __init__(self, gateway: ThreadGateway, client: ExchangeClient) -> None:
        self.client_id = client.client_id
        # Bearer tokens (refreshed by the SDK): HTTP Basic would check the deliberately slow
        # secret on every request.
        self.http = httpx.Client(
            base_url=f"{gateway.url}/registry",
            auth=lambda r: _bearer(r, client),
            timeout=30,
        )

    def __call__(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        content = json.dumps(body) if body is not None else None
        headers = {"Content-Type": V1} if content is not None else None
        return self.http.request(method, path, content=content, headers=headers, params=params)


@dataclass
class World:
    gateway: ThreadGateway
    owner_dept: str
    owner: Http  # registry:read + registry:write of the owning department
    other: Http  # registry:read + registry:write of another department
    admin: Http
    reader: Http  # registry:read of another department

    def close(self) -> None:
        for h in (self.owner, self.other, self.admin, self.reader):
            h.http.close()


@pytest.fixture(scope="module")
def world(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[World]:
    # One set of departments and clients for the module: making clients is slow on purpose.
    tag = uuid.uuid4().hex[:8]
    a, b = f"own-{tag}", f"oth-{tag}"
    make_department(admin, a)
    make_department(admin, b)
    rw = ["registry:read", "registry:write"]
    w = World(
        gateway,
        a,
        Http(gateway, make_client(admin, gateway.url, a, rw)),
        Http(gateway, make_client(admin, gateway.url, b, rw)),
        Http(gateway, admin),
        Http(gateway, make_client(admin, gateway.url, b, ["registry:read"])),
    )
    yield w
    w.close()


def denials(gateway: ThreadGateway, client_id: str) -> int:
    log = gateway.services.audit_review
    return len(log.query(Filters(type="registry.denied", client=client_id), limit=1000))


def state(h: Http, subject: str) -> dict[str, Any]:
    """Everything a write could change about ``subject`` and the global scope."""
    e = quote(subject, safe="")
    return {
        "versions": h("GET", f"/subjects/{e}/versions", deleted="true").json(),
        "latest": h("GET", f"/subjects/{e}/versions/latest").json(),
        "config": h("GET", f"/config/{e}").json(),
        "mode": h("GET", f"/mode/{e}").json(),
        "global": (h("GET", "/config").json(), h("GET", "/mode").json()),
    }


# A write: (name, how to prepare the subject as its owner, the request) -> expected 2xx body.
Prepare = Callable[[Http, str], None]


def registered(h: Http, e: str) -> None:
    assert h("POST", f"/subjects/{e}/versions", {"schema": SCHEMA}).status_code == 200


def soft_deleted(h: Http, e: str) -> None:
    registered(h, e)
    assert h("DELETE", f"/subjects/{e}").status_code == 200


def configured(h: Http, e: str) -> None:
    registered(h, e)
    assert h("PUT", f"/config/{e}", {"compatibility": "FULL"}).status_code == 200
    assert h("PUT", f"/mode/{e}", {"mode": "READWRITE"}).status_code == 200


WRITES: list[tuple[str, Prepare, str, str, Any, dict[str, str]]] = [
    ("register", registered, "POST", "/subjects/{e}/versions", {"schema": GROWN}, {}),
    ("soft delete subject", registered, "DELETE", "/subjects/{e}", None, {}),
    (
        "permanent delete subject",
        soft_deleted,
        "DELETE",
        "/subjects/{e}",
        None,
        {"permanent": "true"},
    ),
    ("delete version", registered, "DELETE", "/subjects/{e}/versions/1", None, {}),
    ("set config", registered, "PUT", "/config/{e}", {"compatibility": "NONE"}, {}),
    ("delete config", configured, "DELETE", "/config/{e}", None, {}),
    ("set mode", registered, "PUT", "/mode/{e}", {"mode": "READONLY"}, {}),
    ("delete mode", configured, "DELETE", "/mode/{e}", None, {}),
]


@pytest.mark.parametrize("write", WRITES, ids=[w[0] for w in WRITES])
@pytest.mark.parametrize("twin", ["-value", "-key", "-value-sealed", "-key-sealed"])
def test_write_matrix(world: World, write: tuple[Any, ...], twin: str) -> None:
    name, prepare, method, path, body, params = write
    for caller in ("other", "owner", "admin"):
        subject = f"{world.owner_dept}.{name}/{caller}{twin}"
        e = quote(subject, safe="")
        prepare(world.owner, e)
        before = state(world.admin, subject)
        seen = denials(world.gateway, world.other.client_id)
        h: Http = getattr(world, caller)
        r = h(method, path.format(e=e), body, **params)
        if caller == "other":
            assert r.status_code == 403, r.text
            assert r.json() == {
                "error_code": 40301,
                "message": f"User is denied operation Write on Subject: {subject}",
            }
            assert state(world.admin, subject) == before  # nothing written
            assert denials(world.gateway, world.other.client_id) == seen + 1
        else:
            assert r.status_code == 200, (caller, r.text)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/config", {"compatibility": "NONE"}),
        ("DELETE", "/config", None),
        ("PUT", "/mode", {"mode": "READONLY"}),
    ],
)
def test_global_config_and_mode_are_admin_only(
    world: World, method: str, path: str, body: Any
) -> None:
    before = state(world.admin, f"{world.owner_dept}.none-value")
    for h in (world.owner, world.other):
        seen = denials(world.gateway, h.client_id)
        r = h(method, path, body)
        assert r.status_code == 403 and r.json()["error_code"] == 40301
        assert denials(world.gateway, h.client_id) == seen + 1
        assert state(world.admin, f"{world.owner_dept}.none-value") == before
    # the admin may; put back what was there so other tests see the usual settings
    if method == "PUT" and path == "/mode":
        assert world.admin("PUT", "/mode", {"mode": "READWRITE"}).status_code == 200
    else:
        level = before["global"][0]["compatibilityLevel"]
        assert world.admin("PUT", "/config", {"compatibility": level}).status_code == 200


def test_subjects_without_a_department_are_admin_only(world: World, unique: str) -> None:
    subject = f"no-owner-{unique}/value"
    e = quote(subject, safe="")
    seen = denials(world.gateway, world.owner.client_id)
    r = world.owner("POST", f"/subjects/{e}/versions", {"schema": SCHEMA})
    assert r.status_code == 403
    assert denials(world.gateway, world.owner.client_id) == seen + 1
    assert world.admin("GET", f"/subjects/{e}/versions").json()["error_code"] == 40401
    assert world.admin("POST", f"/subjects/{e}/versions", {"schema": SCHEMA}).status_code == 200


def test_read_only_clients_cannot_write_but_can_read(world: World) -> None:
    subject = f"{world.owner_dept}.browse-value"
    e = quote(subject, safe="")
    registered(world.owner, e)
    seen = denials(world.gateway, world.reader.client_id)
    r = world.reader("POST", f"/subjects/{e}/versions", {"schema": GROWN})
    assert r.status_code == 403 and r.json()["error_code"] == 40301
    assert denials(world.gateway, world.reader.client_id) == seen + 1
    assert world.admin("GET", f"/subjects/{e}/versions").json() == [1]
    # every read route stays open to registry:read of any department
    assert world.reader("GET", f"/subjects/{e}/versions/latest").status_code == 200
    assert world.reader("GET", f"/config/{e}", defaultToGlobal="true").status_code == 200
    assert world.reader("POST", f"/subjects/{e}", {"schema": SCHEMA}).status_code == 200
    check = world.reader("POST", f"/compatibility/subjects/{e}/versions/latest", {"schema": GROWN})
    assert check.json() == {"is_compatible": True}
    assert subject in world.reader("GET", "/subjects").json()


def test_permanent_delete_of_a_live_topics_subject_is_refused(
    world: World, admin: ExchangeClient
) -> None:
    topic = f"{world.owner_dept}.live"
    plain, sealed = f"{topic}-value", f"{topic}-value-sealed"
    for s in (plain, sealed):
        soft_deleted(world.owner, quote(s, safe=""))
    admin.call(
        "POST",
        "/v1/topics",
        json={"name": topic, "owner": world.owner_dept, "partitions": 1, "value_subject": plain},
    )
    for s in (plain, sealed):
        e = quote(s, safe="")
        for h in (world.owner, world.admin):
            seen = denials(world.gateway, h.client_id)
            r = h("DELETE", f"/subjects/{e}", permanent="true")
            assert r.status_code == 409 and "retire the topic" in r.json()["message"], r.text
            assert h("DELETE", f"/subjects/{e}/versions/1", permanent="true").status_code == 409
            assert denials(world.gateway, h.client_id) == seen + 2
        assert world.admin("GET", f"/subjects/{e}/versions", deleted="true").json() == [1]
    # a subject of no live topic can go
    other = quote(f"{world.owner_dept}.gone-value", safe="")
    soft_deleted(world.owner, other)
    assert world.owner("DELETE", f"/subjects/{other}", permanent="true").json() == [1]
