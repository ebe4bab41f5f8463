"""Export the catalog as an AsyncAPI 3.0 document. Pure: the caller supplies schemas/fields."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from consent.domain import CatalogEntry

AVRO_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"
SchemaFor = Callable[[CatalogEntry], str | None]  # value schema text, None if unknown
FieldsFor = Callable[[CatalogEntry], Sequence[Any] | None]


def _message_id(topic: str) -> str:
    return topic.replace(".", "_")


def _payload(entry: CatalogEntry, schema: str | None) -> dict[str, Any]:
    if schema is None:
        return {"type": "object", "description": f"registry subject {entry.value_subject}"}
    try:
        return {"schemaFormat": AVRO_FORMAT, "schema": json.loads(schema)}
    except ValueError:
        return {"schemaFormat": AVRO_FORMAT, "schema": schema}


def _fields(fields: Sequence[Any] | None) -> list[dict[str, Any]] | None:
    if fields is None:
        return None
    return [
        {
            "path": f.path,
            "classification": str(f.classification),
            "data_subject": bool(getattr(f, "data_subject", False)),
        }
        for f in fields
    ]


def asyncapi_document(
    entries: Iterable[CatalogEntry],
    *,
    gateway_url: str,
    schema_for: SchemaFor,
    fields_for: FieldsFor,
) -> dict[str, Any]:
    url = urlsplit(gateway_url)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for e in entries:
        cid, mid = e.topic, _message_id(e.topic)
        channels[cid] = {
            "address": e.topic,
            "title": e.title,
            "description": e.description or e.title,
            "servers": [{"$ref": "#/servers/gateway"}],
            "messages": {mid: {"$ref": f"#/components/messages/{mid}"}},
            "x-exchange": {
                "owner": e.owner,
                "share_type": e.share_type,
                "update_cycle": e.update_cycle,
                "partitions": e.partitions,
                "cipher": e.cipher,
                "legal_basis": e.legal_basis,
                "value_subject": e.value_subject,
                "fields": _fields(fields_for(e)),
            },
        }
        operations[f"receive-{cid}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"Subscribe to {e.topic} (under the share type and agreements)",
            "messages": [{"$ref": f"#/channels/{cid}/messages/{mid}"}],
        }
        messages[mid] = {
            "name": mid,
            "title": e.title,
            "contentType": "application/json",
            "payload": _payload(e, schema_for(e)),
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "exchange data catalog",
            "version": "1.0.0",
            "description": "Topics published on the exchange; subscribe through the gateway "
            "(long-poll, SSE or webhook) under sharing agreements and consent.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "gateway": {
                "host": url.netloc,
                "protocol": url.scheme or "http",
                "description": "The exchange gateway (OAuth2 client credentials)",
                "security": [{"$ref": "#/components/securitySchemes/oauth2"}],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": f"{gateway_url.rstrip('/')}/oauth/token",
                            "availableScopes": {"subscriber": "read under agreements"},
                        }
                    },
                }
            },
        },
    }
