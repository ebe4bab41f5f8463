"""The world and the requests of the authorization-matrix test (tests/e2e/test_authz_matrix.py).

Department ``own`` owns every resource the requests address (its topic, subject, agreement,
consent, subscription, keys, clients); ``other`` is a stranger with the same roles; ``peer``
is the counterpart of the agreements and consents. Each request is built so that a caller the
declaration allows gets through to the handler and finds the resource (no 404), and a
destructive request works on a throwaway copy so the cells do not disturb each other.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc.jwk import ECKey

from exchange.client import ExchangeClient
from tests.support.scenario import PERSON_SCHEMA, new_client, person

DEPT_ROLES = (
    "publisher",
    "subscriber",
    "steward",
    "registry:read",
    "registry:write",
    "consent_registrar",
)
FAR_FUTURE = "2099-01-01T00:00:00Z"


@dataclass
class Caller:
    name: str  # "anonymous", "own:steward", "other:publisher", "admin", "auditor"
    relation: str | None  # None = anonymous; "own" | "other"
    roles: frozenset[str]
    client_id: str = ""
    secret: str = ""
    token: str = ""
    session: str = ""  # a console session holding the same principal as the token
    csrf: str = ""  # the CSRF token of that session (or of PRE_COOKIE when anonymous)
    mint: Callable[[], str] | None = None  # a fresh session (for requests that end theirs)
    csrf_of: Callable[[str], str] | None = None  # the CSRF token bound to a session

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def basic(self) -> tuple[str, str] | None:
        return (self.client_id, self.secret) if self.client_id else None


@dataclass
class Req:
    method: str
    url: str
    json: Any = None
    data: dict[str, str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    basic: bool = False  # authenticate with client credentials instead of the bearer token
    console: bool = False  # a console page: the session cookie (and a CSRF token on POST)
    fresh_session: bool = False  # the request ends its session: use a throwaway one


@dataclass
class World:
    url: str
    own: str
    other: str
    peer: str
    topic: str  # own's
    subject: str
    peer_topic: str
    schema_id: int
    agreement: str  # peer asks for own's topic: own's steward decides
    consent: str  # recorded by own's registrar
    subscription: str  # own's subscription to peer_topic
    cursor: str
    spare_client: str  # an own client for the client-management routes
    spare_person: str  # an own person (publisher) for the people routes
    clients: dict[str, ExchangeClient]  # "own:<role>", "other:<role>", "peer:<role>"

    def fresh_subject(self) -> str:
        subject = f"{self.own}.tmp{uuid.uuid4().hex[:8]}-value"
        r = self.clients["own:registry:write"].request(
            "POST", f"/registry/subjects/{subject}/versions", json={"schema": _schema()}
        )
        assert r.status_code == 200, r.text
        return subject

    def fresh_subscription(self) -> str:
        return self.clients["own:subscriber"].subscribe(self.peer_topic, fields=["name"])

    def set_subject_config(self, subject: str, kind: str) -> None:
        body = {"compatibility": "BACKWARD"} if kind == "config" else {"mode": "READWRITE"}
        r = self.clients["own:registry:write"].request(
            "PUT", f"/registry/{kind}/{subject}", json=body
        )
        assert r.status_code == 200, r.text


def _schema() -> str:
    return json.dumps(PERSON_SCHEMA)


def _agreement(c: ExchangeClient, topic: str, fields: list[str]) -> str:
    body = {
        "topic": topic,
        "fields": fields,
        "purpose": "authorization matrix",
        "legal_basis": "test",
        "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": FAR_FUTURE,
    }
    return str(c.call("POST", "/v1/agreements", json=body)["id"])


def build_world(admin: ExchangeClient, url: str) -> World:
    tag = uuid.uuid4().hex[:6]
    own, other, peer = f"mx-own-{tag}", f"mx-other-{tag}", f"mx-peer-{tag}"
    clients: dict[str, ExchangeClient] = {}
    for dept, label in ((own, "own"), (other, "other"), (peer, "peer")):
        admin.call("POST", "/v1/departments", json={"id": dept, "name": dept, "level": "city"})
        for role in DEPT_ROLES:
            clients[f"{label}:{role}"] = new_client(admin, url, dept, [role])
    topic, peer_topic = f"{own}.data", f"{peer}.data"
    ids = {}
    for dept, label, name in ((own, "own", topic), (peer, "peer", peer_topic)):
        r = clients[f"{label}:registry:write"].request(
            "POST", f"/registry/subjects/{name}-value/versions", json={"schema": _schema()}
        )
        assert r.status_code == 200, r.text
        ids[label] = r.json()["id"]
        admin.call(
            "POST",
            "/v1/topics",
            json={"name": name, "owner": dept, "partitions": 1, "value_subject": f"{name}-value"},
        )
    clients["own:publisher"].publish(topic, [{"key": "k", "value": person(1)}])
    clients["peer:publisher"].publish(peer_topic, [{"key": "k", "value": person(2)}])
    agreement = _agreement(clients["peer:subscriber"], topic, ["name"])
    granted = _agreement(clients["own:subscriber"], peer_topic, ["name"])
    clients["peer:steward"].call("POST", f"/v1/agreements/{granted}/approve", json={})
    consent = clients["own:consent_registrar"].call(
        "POST",
        "/v1/consents",
        json={
            "subject": "330100000000000001",
            "consumer": peer,
            "topic": topic,
            "purpose": "authorization matrix",
            "valid_until": FAR_FUTURE,
        },
    )["id"]
    world = World(
        url=url,
        own=own,
        other=other,
        peer=peer,
        topic=topic,
        subject=f"{topic}-value",
        peer_topic=peer_topic,
        schema_id=ids["own"],
        agreement=agreement,
        consent=str(consent),
        subscription="",
        cursor="",
        spare_client=str(
            admin.call(
                "POST", f"/v1/departments/{own}/clients", json={"name": "spare", "roles": []}
            )["client_id"]
        ),
        spare_person=str(
            admin.call(
                "POST",
                "/v1/people",
                json={"login": f"mx-{tag}", "department": own, "name": "M", "roles": ["publisher"]},
            )["login"]
        ),
        clients=clients,
    )
    world.subscription = _subscribe_when_granted(world)
    page = clients["own:subscriber"].call(
        "GET", f"/v1/subscriptions/{world.subscription}/records", params={"wait_ms": 0}
    )
    world.cursor = str(page["cursor"])
    return world


def _subscribe_when_granted(w: World) -> str:
    """The delivery side's grant cache learns of the approval within about a second."""
    import time

    deadline = time.monotonic() + 5
    while True:
        try:
            return w.fresh_subscription()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


PRE_COOKIE = "matrix-anonymous-browser"  # the anonymous caller's pre-session CSRF anchor


def callers(
    w: World,
    admin: ExchangeClient,
    auditor: ExchangeClient,
    roles_of: Callable[[str], frozenset[str]],
    session_for: Callable[[str, bool], str],
    csrf_for: Callable[[str], str],
) -> list[Caller]:
    """``session_for(token, throwaway)``: a console session of the token's principal (the
    browser a person with these roles would have; a throwaway one under another login, so
    "sign out everywhere" ends only it); ``csrf_for(anchor)``: the forms' CSRF token."""
    out = [Caller("anonymous", None, frozenset())]
    for label in ("own", "other"):
        for role in DEPT_ROLES:
            c = w.clients[f"{label}:{role}"]
            out.append(Caller(f"{label}:{role}", label, frozenset({role}), c.client_id, c._secret))
    for name, c in (("admin", admin), ("auditor", auditor)):
        out.append(Caller(name, "other", roles_of(c.client_id), c.client_id, c._secret))
    for c in out:
        if c.client_id:
            with ExchangeClient(w.url, c.client_id, c.secret) as sdk:
                c.token = sdk.token()
            c.session = session_for(c.token, False)
            c.csrf = csrf_for(c.session)
            c.mint = lambda token=c.token: session_for(token, True)
            c.csrf_of = csrf_for
        else:
            c.csrf = csrf_for(PRE_COOKIE)
    return out


Builder = Callable[[World], Req]


def _jwk() -> dict[str, Any]:
    return dict(ECKey.generate_key("P-256").as_dict(private=False))


def _subject_routes() -> dict[tuple[str, str], Builder]:
    s = "/registry/subjects/{subject}"
    schema = {"schema": _schema()}

    def fresh_then(kind: str, method: str) -> Builder:
        def build(w: World) -> Req:
            subject = w.fresh_subject()
            w.set_subject_config(subject, kind)
            return Req(method, f"/registry/{kind}/{subject}")

        return build

    return {
        ("GET", "/registry/schemas/types"): lambda w: Req("GET", "/registry/schemas/types"),
        ("GET", "/registry/schemas"): lambda w: Req("GET", "/registry/schemas"),
        ("GET", "/registry/schemas/ids/{schema_id}"): lambda w: Req(
            "GET", f"/registry/schemas/ids/{w.schema_id}"
        ),
        ("GET", "/registry/schemas/ids/{schema_id}/schema"): lambda w: Req(
            "GET", f"/registry/schemas/ids/{w.schema_id}/schema"
        ),
        ("GET", "/registry/schemas/ids/{schema_id}/versions"): lambda w: Req(
            "GET", f"/registry/schemas/ids/{w.schema_id}/versions"
        ),
        ("GET", "/registry/schemas/ids/{schema_id}/subjects"): lambda w: Req(
            "GET", f"/registry/schemas/ids/{w.schema_id}/subjects"
        ),
        ("GET", "/registry/subjects"): lambda w: Req("GET", "/registry/subjects"),
        ("POST", s + "/versions"): lambda w: Req(
            "POST", f"/registry/subjects/{w.subject}/versions", json=schema
        ),
        ("POST", s): lambda w: Req("POST", f"/registry/subjects/{w.subject}", json=schema),
        ("GET", s + "/versions"): lambda w: Req("GET", f"/registry/subjects/{w.subject}/versions"),
        ("GET", s + "/versions/{version}"): lambda w: Req(
            "GET", f"/registry/subjects/{w.subject}/versions/1"
        ),
        ("GET", s + "/versions/{version}/schema"): lambda w: Req(
            "GET", f"/registry/subjects/{w.subject}/versions/1/schema"
        ),
        ("GET", s + "/versions/{version}/referencedby"): lambda w: Req(
            "GET", f"/registry/subjects/{w.subject}/versions/1/referencedby"
        ),
        ("GET", s + "/versions/{version}/fields"): lambda w: Req(
            "GET", f"/registry/subjects/{w.subject}/versions/1/fields"
        ),
        ("DELETE", s): lambda w: Req("DELETE", f"/registry/subjects/{w.fresh_subject()}"),
        ("DELETE", s + "/versions/{version}"): lambda w: Req(
            "DELETE", f"/registry/subjects/{w.fresh_subject()}/versions/1"
        ),
        ("POST", "/registry/compatibility/subjects/{subject}/versions/{version}"): lambda w: Req(
            "POST", f"/registry/compatibility/subjects/{w.subject}/versions/1", json=schema
        ),
        ("POST", "/registry/compatibility/subjects/{subject}/versions"): lambda w: Req(
            "POST", f"/registry/compatibility/subjects/{w.subject}/versions", json=schema
        ),
        ("GET", "/registry/config"): lambda w: Req("GET", "/registry/config"),
        ("PUT", "/registry/config"): lambda w: Req(
            "PUT", "/registry/config", json={"compatibility": "BACKWARD"}
        ),
        ("DELETE", "/registry/config"): lambda w: Req("DELETE", "/registry/config"),
        ("GET", "/registry/config/{subject}"): lambda w: Req(
            "GET", f"/registry/config/{w.subject}", params={"defaultToGlobal": "true"}
        ),
        ("PUT", "/registry/config/{subject}"): lambda w: Req(
            "PUT", f"/registry/config/{w.subject}", json={"compatibility": "BACKWARD"}
        ),
        ("DELETE", "/registry/config/{subject}"): fresh_then("config", "DELETE"),
        ("GET", "/registry/mode"): lambda w: Req("GET", "/registry/mode"),
        ("PUT", "/registry/mode"): lambda w: Req(
            "PUT", "/registry/mode", json={"mode": "READWRITE"}
        ),
        ("GET", "/registry/mode/{subject}"): lambda w: Req(
            "GET", f"/registry/mode/{w.subject}", params={"defaultToGlobal": "true"}
        ),
        ("PUT", "/registry/mode/{subject}"): lambda w: Req(
            "PUT", f"/registry/mode/{w.subject}", json={"mode": "READWRITE"}
        ),
        ("DELETE", "/registry/mode/{subject}"): fresh_then("mode", "DELETE"),
        ("GET", "/registry/contexts"): lambda w: Req("GET", "/registry/contexts"),
        ("GET", "/registry"): lambda w: Req("GET", "/registry"),
        ("GET", "/registry/"): lambda w: Req("GET", "/registry/"),
        ("GET", "/registry/{rest:path}"): lambda w: Req("GET", "/registry/no/such/thing"),
    }


def _api_routes() -> dict[tuple[str, str], Builder]:
    ag = "/v1/agreements/{agreement_id}"
    cn = "/v1/consents/{consent_id}"
    sb = "/v1/subscriptions/{sub_id}"
    cl = "/v1/departments/{dept}/clients/{client_id}"
    form = {"grant_type": "client_credentials"}
    return {
        ("GET", "/healthz"): lambda w: Req("GET", "/healthz"),
        ("GET", "/readyz"): lambda w: Req("GET", "/readyz"),
        ("GET", "/openapi.json"): lambda w: Req("GET", "/openapi.json"),
        ("GET", "/docs"): lambda w: Req("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"): lambda w: Req("GET", "/docs/oauth2-redirect"),
        ("GET", "/docs/assets/{name}"): lambda w: Req("GET", "/docs/assets/swagger-ui.css"),
        ("POST", "/oauth/token"): lambda w: Req("POST", "/oauth/token", data=form, basic=True),
        ("GET", "/oauth/jwks"): lambda w: Req("GET", "/oauth/jwks"),
        ("GET", "/.well-known/oauth-authorization-server"): lambda w: Req(
            "GET", "/.well-known/oauth-authorization-server"
        ),
        ("POST", "/oauth/revoke"): lambda w: Req(
            "POST", "/oauth/revoke", data={"token": "not-a-token"}, basic=True
        ),
        ("POST", "/oauth/introspect"): lambda w: Req(
            "POST", "/oauth/introspect", data={"token": "not-a-token"}, basic=True
        ),
        ("POST", "/v1/admin/signing-keys/rotate"): lambda w: Req(
            "POST", "/v1/admin/signing-keys/rotate"
        ),
        ("POST", "/v1/departments"): lambda w: Req(
            "POST",
            "/v1/departments",
            json={"id": f"mx-{uuid.uuid4().hex[:8]}", "name": "Matrix", "level": "city"},
        ),
        ("GET", "/v1/departments"): lambda w: Req("GET", "/v1/departments"),
        ("POST", "/v1/departments/{dept}/clients"): lambda w: Req(
            "POST",
            f"/v1/departments/{w.own}/clients",
            json={"name": "matrix", "roles": ["publisher"]},
        ),
        ("GET", "/v1/departments/{dept}/clients"): lambda w: Req(
            "GET", f"/v1/departments/{w.own}/clients"
        ),
        ("POST", cl + "/rotate"): lambda w: Req(
            "POST", f"/v1/departments/{w.own}/clients/{w.spare_client}/rotate"
        ),
        ("POST", cl + "/disable"): lambda w: Req(
            "POST", f"/v1/departments/{w.own}/clients/{w.spare_client}/disable"
        ),
        ("POST", cl + "/enable"): lambda w: Req(
            "POST", f"/v1/departments/{w.own}/clients/{w.spare_client}/enable"
        ),
        ("PUT", cl + "/roles"): lambda w: Req(
            "PUT",
            f"/v1/departments/{w.own}/clients/{w.spare_client}/roles",
            json={"roles": ["registry:read"]},
        ),
        ("PUT", cl + "/jwk"): lambda w: Req(
            "PUT", f"/v1/departments/{w.own}/clients/{w.spare_client}/jwk", json={"jwk": _jwk()}
        ),
        ("GET", "/v1/people"): lambda w: Req("GET", "/v1/people", params={"department": w.own}),
        ("POST", "/v1/people"): lambda w: Req(
            "POST",
            "/v1/people",
            json={
                "login": f"mx-{uuid.uuid4().hex[:8]}",
                "department": w.own,
                "name": "M",
                "roles": ["publisher"],
            },
        ),
        ("POST", "/v1/people/{login}/disable"): lambda w: Req(
            "POST", f"/v1/people/{w.spare_person}/disable"
        ),
        ("POST", "/v1/people/{login}/enable"): lambda w: Req(
            "POST", f"/v1/people/{w.spare_person}/enable"
        ),
        ("POST", "/v1/people/{login}/reset-totp"): lambda w: Req(
            "POST", f"/v1/people/{w.spare_person}/reset-totp"
        ),
        ("GET", "/v1/catalog"): lambda w: Req("GET", "/v1/catalog"),
        ("GET", "/v1/catalog/asyncapi"): lambda w: Req("GET", "/v1/catalog/asyncapi"),
        ("GET", "/v1/catalog/{topic}"): lambda w: Req("GET", f"/v1/catalog/{w.topic}"),
        ("POST", "/v1/agreements"): lambda w: Req(
            "POST",
            "/v1/agreements",
            json={
                "topic": w.peer_topic,
                "fields": ["name"],
                "purpose": "matrix",
                "legal_basis": "test",
                "valid_from": "2020-01-01T00:00:00Z",
                "valid_until": FAR_FUTURE,
            },
        ),
        ("GET", "/v1/agreements"): lambda w: Req("GET", "/v1/agreements"),
        ("GET", ag): lambda w: Req("GET", f"/v1/agreements/{w.agreement}"),
        ("POST", ag + "/approve"): lambda w: Req(
            "POST", f"/v1/agreements/{w.agreement}/approve", json={}
        ),
        ("POST", ag + "/reject"): lambda w: Req(
            "POST", f"/v1/agreements/{w.agreement}/reject", json={"reason": "matrix"}
        ),
        ("POST", ag + "/suspend"): lambda w: Req(
            "POST", f"/v1/agreements/{w.agreement}/suspend", json={}
        ),
        ("POST", ag + "/resume"): lambda w: Req("POST", f"/v1/agreements/{w.agreement}/resume"),
        ("POST", ag + "/revoke"): lambda w: Req(
            "POST", f"/v1/agreements/{w.agreement}/revoke", json={}
        ),
        ("GET", "/v1/consents/jwks"): lambda w: Req("GET", "/v1/consents/jwks"),
        ("POST", "/v1/consents"): lambda w: Req(
            "POST",
            "/v1/consents",
            json={
                "subject": "330100000000000002",
                "consumer": w.peer,
                "topic": w.topic,
                "purpose": "matrix",
                "valid_until": FAR_FUTURE,
            },
        ),
        ("POST", "/v1/consents/lookup"): lambda w: Req(
            "POST", "/v1/consents/lookup", json={"subject": "330100000000000001"}
        ),
        ("GET", "/v1/consents/managers/{owner}"): lambda w: Req(
            "GET", f"/v1/consents/managers/{w.own}"
        ),
        ("PUT", "/v1/consents/managers/{owner}/{manager}"): lambda w: Req(
            "PUT", f"/v1/consents/managers/{w.own}/{w.peer}"
        ),
        ("DELETE", "/v1/consents/managers/{owner}/{manager}"): lambda w: Req(
            "DELETE", f"/v1/consents/managers/{w.own}/{w.peer}"
        ),
        ("GET", cn): lambda w: Req("GET", f"/v1/consents/{w.consent}"),
        ("GET", cn + "/versions"): lambda w: Req("GET", f"/v1/consents/{w.consent}/versions"),
        ("POST", cn + "/revoke"): lambda w: Req("POST", f"/v1/consents/{w.consent}/revoke"),
        ("POST", cn + "/pause"): lambda w: Req("POST", f"/v1/consents/{w.consent}/pause"),
        ("POST", cn + "/resume"): lambda w: Req("POST", f"/v1/consents/{w.consent}/resume"),
        ("GET", "/v1/keys"): lambda w: Req("GET", "/v1/keys", params={"topic": w.topic}),
        # Not shared / not mirrored at the matrix gateway: an allowed caller gets 404.
        ("POST", "/v1/federation/keys"): lambda w: Req(
            "POST", "/v1/federation/keys", json={"topic": w.topic, "keys": []}
        ),
        ("POST", "/v1/federation/witness"): lambda w: Req(
            "POST", "/v1/federation/witness", json={"checkpoint": "x", "old_size": 0, "proof": []}
        ),
        ("GET", "/v1/federation/topics/{topic}/records"): lambda w: Req(
            "GET", f"/v1/federation/topics/{w.topic}/records"
        ),
        ("POST", "/v1/keys/rotate"): lambda w: Req(
            "POST", "/v1/keys/rotate", json={"topic": w.topic, "field": "income"}
        ),
        ("POST", "/v1/keys/shred"): lambda w: Req(
            "POST",
            "/v1/keys/shred",
            json={"topic": w.topic, "before": "2000-01-01T00:00:00Z"},  # shreds nothing
        ),
        ("POST", "/v1/kms/keks/{department}/rotate"): lambda w: Req(
            "POST", f"/v1/kms/keks/{w.own}/rotate"
        ),
        ("GET", "/v1/kms/metrics"): lambda w: Req("GET", "/v1/kms/metrics"),
        ("POST", "/v1/topics"): lambda w: Req(
            "POST",
            "/v1/topics",
            json={
                "name": f"{w.own}.t{uuid.uuid4().hex[:8]}",
                "owner": w.own,
                "partitions": 1,
                "value_subject": w.subject,
            },
        ),
        ("GET", "/v1/topics/{topic}"): lambda w: Req("GET", f"/v1/topics/{w.topic}"),
        ("POST", "/v1/topics/{topic}/records"): lambda w: Req(
            "POST", f"/v1/topics/{w.topic}/records", json={"records": [{"value": person(3)}]}
        ),
        ("POST", "/v1/subscriptions"): lambda w: Req(
            "POST", "/v1/subscriptions", json={"topic": w.peer_topic, "fields": ["name"]}
        ),
        ("GET", "/v1/subscriptions"): lambda w: Req("GET", "/v1/subscriptions"),
        ("GET", sb): lambda w: Req("GET", f"/v1/subscriptions/{w.subscription}"),
        ("DELETE", sb): lambda w: Req("DELETE", f"/v1/subscriptions/{w.fresh_subscription()}"),
        ("GET", sb + "/records"): lambda w: Req(
            "GET", f"/v1/subscriptions/{w.subscription}/records", params={"wait_ms": 0}
        ),
        ("POST", sb + "/commit"): lambda w: Req(
            "POST", f"/v1/subscriptions/{w.subscription}/commit", json={"cursor": w.cursor}
        ),
        ("POST", sb + "/seek"): lambda w: Req(
            "POST", f"/v1/subscriptions/{w.subscription}/seek", json={"start": "earliest"}
        ),
        ("GET", sb + "/dead-letters"): lambda w: Req(
            "GET", f"/v1/subscriptions/{w.subscription}/dead-letters"
        ),
        ("GET", sb + "/stream"): lambda w: Req("GET", f"/v1/subscriptions/{w.subscription}/stream"),
        ("GET", "/v1/audit/checkpoint"): lambda w: Req("GET", "/v1/audit/checkpoint"),
        ("GET", "/v1/audit/witnessed"): lambda w: Req("GET", "/v1/audit/witnessed"),
        ("GET", "/v1/audit/proofs/inclusion"): lambda w: Req(
            "GET", "/v1/audit/proofs/inclusion", params={"index": 0, "size": 1}
        ),
        ("GET", "/v1/audit/proofs/consistency"): lambda w: Req(
            "GET", "/v1/audit/proofs/consistency", params={"first": 1, "second": 1}
        ),
        ("GET", "/v1/audit/events"): lambda w: Req("GET", "/v1/audit/events", params={"limit": 1}),
        ("GET", "/v1/audit/events/{index}"): lambda w: Req("GET", "/v1/audit/events/0"),
        ("POST", "/v1/audit/subjects/search"): lambda w: Req(
            "POST", "/v1/audit/subjects/search", json={"subject": "330100000000000001", "limit": 1}
        ),
        ("GET", "/v1/audit/checkpoints"): lambda w: Req(
            "GET", "/v1/audit/checkpoints", params={"limit": 2}
        ),
        ("GET", "/v1/audit/activity"): lambda w: Req("GET", "/v1/audit/activity"),
    }


def _console_routes() -> dict[tuple[str, str], Builder]:
    """Console pages (cookie sessions) and the authorization-code grant's pages."""

    def page(url: str, **params: Any) -> Builder:
        return lambda w: Req("GET", url, params=params, console=True)

    def post(url: str, fresh: bool = False, **data: str) -> Builder:
        return lambda w: Req("POST", url, data=data, console=True, fresh_session=fresh)

    def form(url: Callable[[World], str], data: Callable[[World], dict[str, str]]) -> Builder:
        return lambda w: Req("POST", url(w), data=data(w), console=True)

    def tag() -> str:
        return uuid.uuid4().hex[:8]

    adm, dev = "/console/admin", "/console/dev"
    dept_clients = "/console/admin/departments/{dept}/clients"

    return {
        ("GET", "/oauth/authorize"): page("/oauth/authorize", response_type="code"),
        ("POST", "/oauth/authorize"): post("/oauth/authorize", login="nobody", password="x"),
        ("POST", "/oauth/authorize/second-factor"): post("/oauth/authorize/second-factor"),
        ("GET", "/console"): page("/console"),
        ("GET", "/"): page("/"),
        ("GET", "/ui"): page("/ui"),
        ("GET", "/console/static/{name:path}"): page("/console/static/console.css"),
        ("GET", "/console/lang/{lang}"): page("/console/lang/en"),
        ("GET", "/console/sign-in"): page("/console/sign-in"),
        ("GET", "/console/callback"): page("/console/callback", code="x", state="y"),
        ("POST", "/console/sign-out"): post("/console/sign-out", fresh=True),
        ("POST", "/console/sign-out-everywhere"): post("/console/sign-out-everywhere", fresh=True),
        ("GET", "/console/account"): page("/console/account"),
        # The matrix's sessions are machine principals: their password is kept elsewhere (409).
        ("POST", "/console/account/password"): post(
            "/console/account/password", current="x", new="y", again="y"
        ),
        ("GET", f"{adm}/departments"): page(f"{adm}/departments"),
        ("POST", f"{adm}/departments"): form(
            lambda w: f"{adm}/departments",
            lambda w: {"id": f"mx-{tag()}", "name": "Matrix", "level": "county", "parent": w.own},
        ),
        ("GET", f"{adm}/departments/{{dept}}"): lambda w: Req(
            "GET", f"{adm}/departments/{w.own}", console=True
        ),
        ("POST", dept_clients): form(
            lambda w: f"{adm}/departments/{w.own}/clients",
            lambda w: {"name": "matrix", "roles": "publisher"},
        ),
        ("POST", dept_clients + "/{client_id}/rotate"): form(
            lambda w: f"{adm}/departments/{w.own}/clients/{w.spare_client}/rotate", lambda w: {}
        ),
        ("POST", dept_clients + "/{client_id}/{action}"): form(
            lambda w: f"{adm}/departments/{w.own}/clients/{w.spare_client}/enable", lambda w: {}
        ),
        ("GET", f"{adm}/topics"): page(f"{adm}/topics"),
        ("POST", f"{adm}/topics"): form(
            lambda w: f"{adm}/topics",
            lambda w: {
                "name": f"{w.own}.c{tag()}",
                "owner": w.own,
                "value_subject": w.subject,
                "partitions": "1",
            },
        ),
        ("GET", f"{adm}/keys"): page(f"{adm}/keys"),
        ("POST", f"{adm}/keys/signing/rotate"): post(f"{adm}/keys/signing/rotate"),
        ("GET", f"{adm}/health"): page(f"{adm}/health"),
        ("GET", f"{adm}/people"): page(f"{adm}/people"),
        ("POST", f"{adm}/people"): form(
            lambda w: f"{adm}/people",
            lambda w: {
                "login": f"mx{tag()}",
                "name": "M",
                "department": w.own,
                "roles": "publisher",
            },
        ),
        ("POST", f"{adm}/people/{{login}}/{{action}}"): post(
            f"{adm}/people/admin/enable"
        ),  # the bootstrap admin person
        ("GET", f"{dev}/catalog"): page(f"{dev}/catalog", q="mx"),
        ("GET", f"{dev}/catalog/{{topic}}"): lambda w: Req(
            "GET", f"{dev}/catalog/{w.topic}", console=True
        ),
        ("GET", f"{dev}/asyncapi"): page(f"{dev}/asyncapi"),
        ("GET", f"{dev}/schemas/{{subject}}"): lambda w: Req(
            "GET", f"{dev}/schemas/{w.subject}", console=True
        ),
        ("GET", f"{dev}/compatibility"): page(f"{dev}/compatibility"),
        ("POST", f"{dev}/schemas/{{subject}}/check"): form(
            lambda w: f"{dev}/schemas/{w.subject}/check", lambda w: {"schema": _schema()}
        ),
        ("POST", f"{dev}/schemas/{{subject}}/register"): form(
            lambda w: f"{dev}/schemas/{w.subject}/register", lambda w: {"schema": _schema()}
        ),
        ("GET", f"{dev}/try"): page(f"{dev}/try"),
        ("POST", f"{dev}/try"): form(
            lambda w: f"{dev}/try",
            lambda w: {"topic": w.topic, "record": json.dumps(person(4))},
        ),
        ("POST", f"{dev}/try/subscribe"): form(
            lambda w: f"{dev}/try/subscribe", lambda w: {"topic": w.peer_topic}
        ),
        ("GET", f"{dev}/try/subscriptions/{{sub_id}}/records"): lambda w: Req(
            "GET", f"{dev}/try/subscriptions/{w.subscription}/records", console=True
        ),
        **_steward_pages(),
        **_audit_pages(),
    }


def _steward_pages() -> dict[tuple[str, str], Builder]:
    st = "/console/steward/{dept}"
    return {
        ("GET", "/console/steward"): lambda w: Req("GET", "/console/steward", console=True),
        ("GET", st): lambda w: Req("GET", f"/console/steward/{w.own}", console=True),
        ("GET", st + "/consumers"): lambda w: Req(
            "GET", f"/console/steward/{w.own}/consumers", console=True
        ),
        ("GET", st + "/agreements/{agreement_id}"): lambda w: Req(
            "GET", f"/console/steward/{w.own}/agreements/{w.agreement}", console=True
        ),
        ("POST", st + "/agreements/{agreement_id}/{action}"): lambda w: Req(
            "POST",
            f"/console/steward/{w.own}/agreements/{w.agreement}/approve",
            data={"fields": "name"},
            console=True,
        ),
    }


def _audit_pages() -> dict[tuple[str, str], Builder]:
    def page(url: str, **params: Any) -> Builder:
        return lambda w: Req("GET", url, params=params, console=True)

    return {
        ("GET", "/console/audit"): page("/console/audit", limit="1"),
        ("GET", "/console/audit/events/{index}"): page("/console/audit/events/0"),
        ("GET", "/console/audit/subjects"): page("/console/audit/subjects"),
        ("POST", "/console/audit/subjects"): lambda w: Req(
            "POST", "/console/audit/subjects", data={"subject": "330100000000000001"}, console=True
        ),
        ("GET", "/console/audit/export"): page("/console/audit/export", format="csv"),
        ("GET", "/console/audit/checkpoints"): page("/console/audit/checkpoints"),
        ("GET", "/console/audit/activity"): page("/console/audit/activity"),
        ("GET", "/console/audit/key"): page("/console/audit/key"),
    }


REQUESTS: dict[tuple[str, str], Builder] = {
    **_subject_routes(),
    **_api_routes(),
    **_console_routes(),
}


def send_console(
    http: httpx.Client, caller: Caller, req: Req, request_id: str | None = None
) -> int:
    """A browser's request: the session cookie, the CSRF token in a POSTed form. Being sent
    to sign in counts as 401 (the page's answer to "no valid credentials")."""
    session, csrf = caller.session, caller.csrf
    if caller.mint is not None and caller.csrf_of is not None:
        # A fresh session per request: "sign out everywhere" ends every session of the
        # principal, and the routes called after it must still find a live one.
        session = caller.mint()
        csrf = caller.csrf_of(session)
    cookies = {"exchange_session": session} if session else {"exchange_pre": PRE_COOKIE}
    data = dict(req.data or {})
    if req.method == "POST":
        data["csrf"] = csrf
    http.cookies.clear()
    r = http.request(
        req.method,
        req.url,
        params=req.params,
        data=data or None,
        cookies=cookies,
        headers={"X-Request-ID": request_id} if request_id else None,
    )
    location = r.headers.get("location", "")
    if r.status_code in (302, 303) and location.startswith("/console/sign-in"):
        return 401
    return r.status_code


def send(http: httpx.Client, caller: Caller, req: Req, request_id: str | None = None) -> int:
    """The status only; a stream is closed as soon as its head arrives. ``request_id`` is
    sent as ``X-Request-ID`` (what the gateway then does is attributed to it)."""
    if req.console:
        return send_console(http, caller, req, request_id)
    headers = {} if req.basic else caller.auth()
    if request_id:
        headers["X-Request-ID"] = request_id
    auth = caller.basic() if req.basic else None
    with http.stream(
        req.method,
        req.url,
        headers=headers,
        auth=auth,
        json=req.json,
        data=req.data,
        params=req.params,
    ) as r:
        return r.status_code
