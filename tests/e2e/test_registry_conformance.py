"""Conformance with Confluent Schema Registry (issue 13): every Avro method of Confluent's own
Python client, then raw HTTP for each behaviour a client, CI job or UI relies on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from confluent_kafka.schema_registry import (
    ConfigCompatibilityLevel,
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    ServerConfig,
)
from confluent_kafka.schema_registry.error import SchemaRegistryError
from typer.testing import CliRunner

from cli.main import app as cli
from exchange.client import ExchangeClient
from tests.conftest import make_client, make_department
from tests.support.gateway import ThreadGateway

pytestmark = pytest.mark.e2e
V1 = "application/vnd.schemaregistry.v1+json"


def person(*extra: dict[str, Any], doc: str | None = None, name_class: str = "sensitive") -> str:
    fields = [{"name": "name", "type": "string", "classification": name_class}, *extra]
    body: dict[str, Any] = {"type": "record", "name": "Person", "namespace": "gov.civil"}
    if doc is not None:
        body["doc"] = doc
    return json.dumps({**body, "fields": fields}, indent=2)


def compact(text: str) -> str:
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


AGE = {"name": "age", "type": "int", "default": 0}


@pytest.fixture
def dept(admin: ExchangeClient, unique: str) -> str:
    make_department(admin, f"sr-{unique}")
    return f"sr-{unique}"


@pytest.fixture
def writer(gateway: ThreadGateway, admin: ExchangeClient, dept: str) -> ExchangeClient:
    return make_client(admin, gateway.url, dept, ["registry:read", "registry:write"])


def sr_client(gateway: ThreadGateway, client: ExchangeClient) -> SchemaRegistryClient:
    return SchemaRegistryClient(
        {
            "url": f"{gateway.url}/registry",
            "basic.auth.user.info": f"{client.client_id}:{client._secret}",
            "max.retries": 0,
        }
    )


def _bearer(request: httpx.Request, client: ExchangeClient) -> httpx.Request:
    request.headers["Authorization"] = f"Bearer {client.token()}"
    return request


class Http:
    """Raw HTTP, subjects percent-encoded the way Confluent's clients do it."""

    def __init__(self, gateway: ThreadGateway, client: ExchangeClient) -> None:
        # Bearer tokens (refreshed by the SDK): HTTP Basic would check the deliberately slow
        # secret on every request.
        self.http = httpx.Client(
            base_url=f"{gateway.url}/registry",
            auth=lambda r: _bearer(r, client),
            timeout=30,
        )

    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
        **params: Any,
    ) -> httpx.Response:  # fmt: skip
        content = json.dumps(body) if body is not None else None
        hdrs = {"Content-Type": V1, **(headers or {})} if content is not None else headers
        return self.http.request(method, path, content=content, headers=hdrs, params=params)


@pytest.fixture
def http(gateway: ThreadGateway, writer: ExchangeClient) -> Iterator[Http]:
    h = Http(gateway, writer)
    yield h
    h.http.close()


def names(dept: str) -> list[str]:
    """Subjects Confluent accepts and URL paths make hard: '/', spaces, '%', '+', unicode."""
    return [
        f"{dept}.plain-value",
        f"{dept}.with/slash/and space-value",
        f"{dept}.100%+plus?query#hash-value",
        f"{dept}.ünïcødé-€-名前-value",
    ]


# -- Confluent's own client: every method it offers for Avro ---------------------------------
@pytest.mark.parametrize("which", range(4))
def test_every_client_method_round_trips_any_subject_name(
    gateway: ThreadGateway, writer: ExchangeClient, dept: str, which: int
) -> None:
    s = names(dept)[which]
    v1, v2 = person(doc=s), person(AGE, doc=s)  # a schema (and so an id) of this test only
    sr = sr_client(gateway, writer)
    assert sr.get_schema_types() == ["AVRO"]
    sid = sr.register_schema(s, Schema(v1, "AVRO"))
    full = sr.register_schema_full_response(s, Schema(v1, "AVRO"))
    assert full.schema_id == sid
    sr.clear_caches()  # the client caches what it sent; ask the registry
    assert sr.get_schema(sid).schema_str == compact(v1)
    assert sr.get_schema(sid, subject_name=s).schema_str == compact(v1)
    assert sr.get_subjects_by_schema_id(sid) == [s]
    assert [(v.subject, v.version) for v in sr.get_schema_versions(sid)] == [(s, 1)]
    found = sr.lookup_schema(s, Schema(v1, "AVRO"))
    assert (found.subject, found.version, found.schema_id) == (s, 1, sid)
    assert s in sr.get_subjects() and sr.get_subjects(subject_prefix=s) == [s]
    assert sr.get_latest_version(s).version == 1
    sr.clear_caches()
    assert sr.get_version(s, 1).schema.schema_str == compact(v1)
    assert sr.get_versions(s) == [1]
    assert sr.get_referenced_by(s, 1) == []

    assert sr.set_compatibility(s, "FULL") == {"compatibility": "FULL"}
    assert sr.get_compatibility(s) == "FULL"
    sr.set_config(s, ServerConfig(compatibility=ConfigCompatibilityLevel.BACKWARD))
    assert str(sr.get_config(s).compatibility_level) == "BACKWARD"
    assert str(sr.delete_config(s).compatibility_level) == "BACKWARD"
    assert str(sr.get_config().compatibility_level) in {"BACKWARD", "NONE"}

    assert sr.test_compatibility(s, Schema(v2, "AVRO"))
    assert not sr.test_compatibility(s, Schema(person({"name": "x", "type": "int"}, doc=s), "AVRO"))
    assert sr.test_compatibility_all_versions(s, Schema(v2, "AVRO"))
    assert sr.register_schema(s, Schema(v2, "AVRO")) != sid

    assert sr.update_mode(s, "READONLY") == "READONLY"
    assert sr.get_mode(s) == "READONLY"
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(s, Schema(person(AGE, doc="other"), "AVRO"))
    assert e.value.error_code == 42205
    assert sr.delete_mode(s) == "READONLY"
    assert sr.get_global_mode() == "READWRITE"
    assert sr.get_contexts() == ["."]

    assert sr.delete_version(s, 2) == 2
    assert sr.get_versions(s) == [1]
    assert sr.get_versions(s, deleted=True) == [1, 2]
    assert sr.get_versions(s, deleted_only=True) == [2]
    assert sr.get_version(s, 2, deleted=True).version == 2
    assert sr.delete_subject(s) == [1]
    assert s not in sr.get_subjects()
    assert s in sr.get_subjects(deleted=True) and s in sr.get_subjects(deleted_only=True)
    assert sr.delete_version(s, 2, permanent=True) == 2
    assert sr.delete_subject(s, permanent=True) == [1]
    assert s not in sr.get_subjects(deleted=True)
    assert sr.get_schema(sid).schema_str == compact(v1)  # ids stay readable


def test_references_and_referencedby(
    gateway: ThreadGateway, writer: ExchangeClient, http: Http, dept: str
) -> None:
    sr = sr_client(gateway, writer)
    address = f"{dept}.shared/address"
    text = json.dumps(
        {
            "type": "record",
            "name": "Address",
            "namespace": "gov.civil",
            "fields": [{"name": "street", "type": "string"}],
        }
    )
    sr.register_schema(address, Schema(text, "AVRO"))
    resident = json.dumps(
        {
            "type": "record",
            "name": "Resident",
            "namespace": "gov.civil",
            "fields": [{"name": "home", "type": "Address"}],
        }
    )
    refs = [SchemaReference("gov.civil.Address", address, 1)]
    rid = sr.register_schema(f"{dept}.residents-value", Schema(resident, "AVRO", refs))
    assert sr.get_referenced_by(address, 1) == [rid]
    enc = quote(address, safe="")
    assert http("GET", f"/subjects/{enc}/versions/latest/referencedby").json() == [rid]
    # referenced types are written by name, as Java Avro's toString(refs) does
    assert sr.get_schema(rid).schema_str == (
        '{"type":"record","name":"Resident","namespace":"gov.civil",'
        '"fields":[{"name":"home","type":"Address"}]}'
    )
    refused = http("DELETE", f"/subjects/{enc}/versions/1")
    assert refused.status_code == 422 and refused.json() == {
        "error_code": 42206,
        "message": "One or more references exist to the schema "
        f"{{magic=1,keytype=SCHEMA,subject={address},version=1}}.",
    }


# -- item 1: identity is the stored text -----------------------------------------------------
def test_doc_and_custom_properties_make_new_versions(http: Http, dept: str) -> None:
    s = quote(f"{dept}.identity-value", safe="")
    first = http("POST", f"/subjects/{s}/versions", {"schema": person()}).json()["id"]
    documented = http("POST", f"/subjects/{s}/versions", {"schema": person(doc="new doc")})
    assert documented.json()["id"] != first
    assert http("GET", f"/subjects/{s}/versions").json() == [1, 2]
    latest = http("GET", f"/subjects/{s}/versions/latest").json()
    assert json.loads(latest["schema"])["doc"] == "new doc"
    # whitespace alone is not a new schema
    again = json.dumps(json.loads(person(doc="new doc")))
    assert http("POST", f"/subjects/{s}/versions", {"schema": again}).json()["id"] != first
    assert http("GET", f"/subjects/{s}/versions").json() == [1, 2]


def test_reused_text_after_hard_delete_never_lends_another_schemas_text(
    http: Http, dept: str
) -> None:
    s = quote(f"{dept}.unique-value", safe="")
    http("PUT", f"/config/{s}", {"compatibility": "NONE"})
    x = http("POST", f"/subjects/{s}/versions", {"schema": '{"type":"string","unique":"X"}'})
    http("DELETE", f"/subjects/{s}")
    http("DELETE", f"/subjects/{s}", permanent="true")
    y = http("POST", f"/subjects/{s}/versions", {"schema": '{"type":"string","unique":"Y"}'})
    assert y.json()["id"] != x.json()["id"]
    got = http("GET", f"/schemas/ids/{y.json()['id']}").json()
    assert got == {"schema": '{"type":"string","unique":"Y"}'}


def test_normalize_registers_the_normalized_form(http: Http, dept: str) -> None:
    s = quote(f"{dept}.normal-value", safe="")
    x = '"fields":[{"name":"x","type":"int"}]'
    a = '{"type":"record","name":"R","namespace":"n",' + x + ',"p":1,"q":2}'
    b = "{" + x + ',"name":"n.R","type":"record","q":2,"p":1}'
    one = http("POST", f"/subjects/{s}/versions", {"schema": a}, normalize="true").json()["id"]
    two = http("POST", f"/subjects/{s}/versions", {"schema": b}, normalize="true").json()["id"]
    assert one == two
    found = http("POST", f"/subjects/{s}", {"schema": b}, normalize="true").json()
    assert found["schema"] == (
        '{"name":"n.R","type":"record","fields":[{"name":"x","type":"int","order":"ascending"}],'
        '"p":1,"q":2}'
    )
    # the normalize config does the same without the query parameter
    other = quote(f"{dept}.normal2-value", safe="")
    assert http("PUT", f"/config/{other}", {"normalize": True}).json()["normalize"] is True
    assert http("GET", f"/config/{other}").json()["normalize"] is True
    assert http("POST", f"/subjects/{other}/versions", {"schema": b}).json()["id"] == one


# -- item 2: GET /schemas ---------------------------------------------------------------------
def test_list_all_schemas_with_filters(http: Http, dept: str) -> None:
    a, b = f"{dept}.list/a-value", f"{dept}.list/b-value"
    for s in (a, b):
        http("POST", f"/subjects/{quote(s, safe='')}/versions", {"schema": person()})
        http("POST", f"/subjects/{quote(s, safe='')}/versions", {"schema": person(AGE)})
    http("DELETE", f"/subjects/{quote(b, safe='')}/versions/2")
    listed = http("GET", "/schemas", subjectPrefix=f"{dept}.list/").json()
    assert [(x["subject"], x["version"]) for x in listed] == [(a, 1), (a, 2), (b, 1)]
    assert listed[0]["schema"] == compact(person()) and "id" in listed[0]
    with_deleted = http("GET", "/schemas", subjectPrefix=f"{dept}.list/", deleted="true").json()
    assert len(with_deleted) == 4
    latest = http("GET", "/schemas", subjectPrefix=f"{dept}.list/", latestOnly="true").json()
    assert [(x["subject"], x["version"]) for x in latest] == [(a, 2), (b, 1)]
    page = http("GET", "/schemas", subjectPrefix=f"{dept}.list/", offset=1, limit=1).json()
    assert [(x["subject"], x["version"]) for x in page] == [(a, 2)]


# -- item 3: every route with reserved characters ---------------------------------------------
def test_every_route_takes_percent_encoded_subjects(http: Http, dept: str) -> None:
    for s in names(dept)[1:]:
        e = quote(s, safe="")
        sid = http("POST", f"/subjects/{e}/versions", {"schema": person()}).json()["id"]
        assert http("POST", f"/subjects/{e}", {"schema": person()}).json()["subject"] == s
        assert http("GET", f"/subjects/{e}/versions").json() == [1]
        assert http("GET", f"/subjects/{e}/versions/1").json()["subject"] == s
        assert http("GET", f"/subjects/{e}/versions/latest/schema").json()["name"] == "Person"
        assert http("GET", f"/subjects/{e}/versions/1/referencedby").json() == []
        assert http("GET", f"/subjects/{e}/versions/1/fields").status_code == 200
        compat = http("POST", f"/compatibility/subjects/{e}/versions/latest", {"schema": person()})
        assert compat.json() == {"is_compatible": True}
        compat_all = http("POST", f"/compatibility/subjects/{e}/versions", {"schema": person()})
        assert compat_all.json() == {"is_compatible": True}
        assert http("PUT", f"/config/{e}", {"compatibility": "FULL"}).status_code == 200
        assert http("GET", f"/config/{e}").json() == {"compatibilityLevel": "FULL"}
        assert http("DELETE", f"/config/{e}").status_code == 200
        assert http("PUT", f"/mode/{e}", {"mode": "READWRITE"}).status_code == 200
        assert http("GET", f"/mode/{e}").json() == {"mode": "READWRITE"}
        assert http("DELETE", f"/mode/{e}").status_code == 200
        assert http("GET", f"/schemas/ids/{sid}/subjects", subject=s).json() == [s]
        assert http("GET", "/subjects", subjectPrefix=s).json() == [s]
        assert http("DELETE", f"/subjects/{e}/versions/1").json() == 1
        assert http("DELETE", f"/subjects/{e}/versions/1", permanent="true").json() == 1
        assert http("GET", f"/subjects/{e}/versions").json()["error_code"] == 40401


# -- item 4: exact codes and Confluent's wording ----------------------------------------------
def test_error_codes_and_messages(http: Http, dept: str) -> None:
    unknown = quote(f"{dept}.nobody-value", safe="")
    s = quote(f"{dept}.errors-value", safe="")
    plain = f"{dept}.errors-value"
    # compatibility against an unknown version: 40402 (Confluent does not look for the subject)
    r = http("POST", f"/compatibility/subjects/{unknown}/versions/1", {"schema": person()})
    assert (r.status_code, r.json()) == (
        404,
        {"error_code": 40402, "message": "Version 1 not found."},
    )
    r = http("POST", f"/compatibility/subjects/{unknown}/versions/latest", {"schema": person()})
    assert r.json() == {"is_compatible": True}  # nothing to be incompatible with
    r = http("GET", f"/subjects/{unknown}/versions/1")
    assert r.json() == {"error_code": 40401, "message": f"Subject '{dept}.nobody-value' not found."}
    http("POST", f"/subjects/{s}/versions", {"schema": person()})
    r = http("POST", f"/compatibility/subjects/{s}/versions/7", {"schema": person()})
    assert r.json() == {"error_code": 40402, "message": "Version 7 not found."}
    r = http("GET", f"/subjects/{s}")  # a path Confluent serves, but not for GET
    assert (r.status_code, r.json()) == (
        405,
        {"error_code": 405, "message": "HTTP 405 Method Not Allowed"},
    )
    r = http("GET", "/no/such/route")
    assert (r.status_code, r.json()) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})
    r = http("GET", "/schemas/ids/invalid")
    assert (r.status_code, r.json()) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})
    r = http("GET", "/schemas/ids/2147483000")
    assert r.json() == {"error_code": 40403, "message": "Schema 2147483000 not found"}
    r = http("PUT", f"/config/{s}", {"compatibility": "SIDEWAYS"})
    assert (r.status_code, r.json()) == (
        422,
        {
            "error_code": 42203,
            "message": "Invalid compatibility level. Valid values are none, backward, forward, "
            "full, backward_transitive, forward_transitive, and full_transitive",
        },
    )
    r = http("PUT", f"/mode/{s}", {"mode": "SLEEPY"})
    assert r.json() == {
        "error_code": 42204,
        "message": "Invalid mode. Valid values are READWRITE, READONLY, IMPORT and FORWARD.",
    }
    r = http("GET", f"/mode/{s}")
    assert r.json() == {
        "error_code": 40409,
        "message": f"Subject '{plain}' does not have subject-level mode configured",
    }
    r = http("GET", f"/config/{s}")
    assert r.json() == {
        "error_code": 40408,
        "message": f"Subject '{plain}' does not have subject-level compatibility configured",
    }
    for empty in ({"schema": ""}, {"schema": "   "}, {}):
        r = http("POST", f"/subjects/{s}/versions", empty)
        assert (r.status_code, r.json()) == (422, {"error_code": 42201, "message": "Empty schema"})
    http("DELETE", f"/subjects/{s}/versions/1")
    r = http("DELETE", f"/subjects/{s}/versions/1")
    assert (r.status_code, r.json()) == (
        404,
        {
            "error_code": 40406,
            "message": f"Subject '{plain}' Version 1 was soft deleted.Set permanent=true to "
            "delete permanently",
        },
    )
    http("PUT", f"/mode/{s}", {"mode": "READONLY"})
    r = http("POST", f"/subjects/{s}/versions", {"schema": person(AGE)})
    assert (r.status_code, r.json()) == (
        422,
        {"error_code": 42205, "message": f"Subject {plain} in context . is in read-only mode"},
    )
    http("DELETE", f"/mode/{s}")
    r = http("POST", f"/subjects/{s}/versions", {"schema": person(AGE), "id": 12345})
    assert r.json() == {
        "error_code": 42205,
        "message": f"Subject {plain} in context . is not in import mode",
    }
    r = http("POST", f"/subjects/{s}/versions", {"schema": "{}", "schemaType": "PROTOBUF"})
    assert r.json()["error_code"] == 42201


# -- item 5: content negotiation --------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "answered"),
    [
        (None, V1),
        ("*/*", V1),
        (V1, V1),
        ("application/vnd.schemaregistry+json", "application/vnd.schemaregistry+json"),
        ("application/json", "application/json"),
        ("text/html, application/json;q=0.9", "application/json"),
        (f"application/json, {V1}, application/vnd.schemaregistry+json", V1),
    ],
)
def test_accept_is_answered_in_kind(http: Http, accept: str | None, answered: str) -> None:
    r = http("GET", "/schemas/types", headers={"Accept": accept} if accept else {})
    assert r.status_code == 200 and r.headers["content-type"] == answered


def test_unsupported_media_types(http: Http, dept: str) -> None:
    r = http("GET", "/subjects", headers={"Accept": "text/html"})
    assert (r.status_code, r.json()) == (
        406,
        {"error_code": 406, "message": "HTTP 406 Not Acceptable"},
    )
    s = quote(f"{dept}.media-value", safe="")
    r = http(
        "POST",
        f"/subjects/{s}/versions",
        {"schema": person()},
        headers={"Content-Type": "text/plain"},
    )
    assert (r.status_code, r.json()) == (
        415,
        {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"},
    )
    assert http("GET", f"/subjects/{s}/versions").json()["error_code"] == 40401  # nothing written
    for ok in (
        V1,
        "application/vnd.schemaregistry+json",
        "application/json",
        "application/octet-stream",
    ):
        r = http(
            "POST", f"/subjects/{s}/versions", {"schema": person()}, headers={"Content-Type": ok}
        )
        assert r.status_code == 200, ok


# -- item 6: Confluent's compact schema strings -----------------------------------------------
def test_returned_schema_strings_are_confluents_compact_form(http: Http, dept: str) -> None:
    s = quote(f"{dept}.compact-value", safe="")
    text = json.dumps(
        {
            "name": "gov.civil.Person",
            "type": "record",
            "doc": "résumé ✓",
            "fields": [
                {"type": {"type": "int"}, "name": "born", "default": 0, "order": "ascending"},
                {"name": "tags", "type": {"type": "array", "items": "string"}, "x": 1},
            ],
        },
        indent=4,
    )
    sid = http("POST", f"/subjects/{s}/versions", {"schema": text}).json()["id"]
    expected = (
        '{"type":"record","name":"Person","namespace":"gov.civil","doc":"résumé ✓","fields":['
        '{"name":"born","type":"int","default":0},'
        '{"name":"tags","type":{"type":"array","items":"string"},"x":1}]}'
    )
    assert http("GET", f"/schemas/ids/{sid}").json()["schema"] == expected
    assert http("GET", f"/subjects/{s}/versions/1").json()["schema"] == expected
    assert http("GET", f"/schemas/ids/{sid}/schema").content.decode() == expected
    assert http("POST", f"/subjects/{s}", {"schema": text}).json()["schema"] == expected


# -- item 7: ids/{id}/versions, deleted listings, defaultToGlobal -----------------------------
def test_listings_and_default_to_global(http: Http, dept: str) -> None:
    a, b = quote(f"{dept}.share/a-value", safe=""), quote(f"{dept}.share/b-value", safe="")
    mine = person(doc=dept)  # an id only this test uses
    sid = http("POST", f"/subjects/{a}/versions", {"schema": mine}).json()["id"]
    http("POST", f"/subjects/{b}/versions", {"schema": mine})
    both = [{"subject": f"{dept}.share/a-value", "version": 1},
            {"subject": f"{dept}.share/b-value", "version": 1}]  # fmt: skip
    assert http("GET", f"/schemas/ids/{sid}/versions").json() == both
    http("DELETE", f"/subjects/{b}")
    assert http("GET", f"/schemas/ids/{sid}/versions").json() == both[:1]
    assert http("GET", f"/schemas/ids/{sid}/versions", deleted="true").json() == both
    assert http("GET", f"/schemas/ids/{sid}/subjects").json() == [f"{dept}.share/a-value"]
    only = http("GET", "/subjects", subjectPrefix=f"{dept}.share/", deletedOnly="true").json()
    assert only == [f"{dept}.share/b-value"]
    assert http("GET", f"/subjects/{b}/versions", deletedOnly="true").json() == [1]
    assert http("GET", f"/schemas/ids/{sid}/versions/x").status_code == 404
    glob = http("GET", "/config").json()["compatibilityLevel"]
    assert http("GET", f"/config/{a}", defaultToGlobal="true").json() == {
        "compatibilityLevel": glob
    }
    assert http("GET", f"/config/{a}").json()["error_code"] == 40408
    assert http("GET", f"/mode/{a}", defaultToGlobal="true").json() == {"mode": "READWRITE"}
    assert http("GET", f"/mode/{a}").json()["error_code"] == 40409


# -- item 8: compatibility includes classification; verbose lists each problem ----------------
def test_compatibility_answers_include_classification_and_each_problem(
    http: Http, admin: ExchangeClient, gateway: ThreadGateway, dept: str
) -> None:
    s = quote(f"{dept}.classified-value", safe="")
    http("POST", f"/subjects/{s}/versions", {"schema": person({"name": "x", "type": "int"})})
    lowered = person({"name": "x", "type": "int"}, name_class="public")
    r = http(
        "POST", f"/compatibility/subjects/{s}/versions/latest", {"schema": lowered}, verbose="true"
    )
    assert r.json()["is_compatible"] is False
    [message] = r.json()["messages"]
    assert "CLASSIFICATION_DOWNGRADE" in message and "'name'" in message
    assert "requires the admin role" in message
    refused = http("POST", f"/subjects/{s}/versions", {"schema": lowered})
    assert refused.status_code == 403 and "requires the admin role" in refused.json()["message"]
    # an admin may lower it, so the admin's check says compatible
    admin_check = admin.request(
        "POST", f"/registry/compatibility/subjects/{s}/versions/latest", json={"schema": lowered}
    )
    assert admin_check.json() == {"is_compatible": True}
    # two Avro problems at once: two messages, each with its own errorType
    broken = person({"name": "x", "type": "string"}, {"name": "y", "type": "int"})
    r = http("POST", f"/compatibility/subjects/{s}/versions/1", {"schema": broken}, verbose="true")
    msgs = r.json()["messages"]
    kinds = [m.split("'")[1] for m in msgs if m.startswith("{errorType:")]
    assert kinds == ["TYPE_MISMATCH", "READER_FIELD_MISSING_DEFAULT_VALUE"]
    assert "{oldSchemaVersion: 1}" in msgs
    assert msgs[-1] == "{validateFields: 'false', compatibility: 'BACKWARD'}"
    assert (
        "messages"
        not in http("POST", f"/compatibility/subjects/{s}/versions/1", {"schema": broken}).json()
    )


def test_cli_check_reports_a_classification_downgrade(
    gateway: ThreadGateway, writer: ExchangeClient, dept: str, tmp_path: Path
) -> None:
    creds = [
        "--url",
        gateway.url,
        "--client-id",
        writer.client_id,
        "--client-secret",
        writer._secret,
    ]
    s = f"{dept}.cli/checked-value"
    v1, v2 = tmp_path / "v1.avsc", tmp_path / "v2.avsc"
    v1.write_text(person())
    v2.write_text(person(name_class="public"))
    runner = CliRunner()
    assert runner.invoke(cli, ["schema", "register", s, str(v1), *creds]).exit_code == 0
    out = runner.invoke(cli, ["schema", "check", s, str(v2), *creds])
    assert out.exit_code == 1 and "CLASSIFICATION_DOWNGRADE" in out.output
    assert "requires the admin role" in out.output.replace("\n", " ")
