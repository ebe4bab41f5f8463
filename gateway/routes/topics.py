"""Topics (catalog entry + Kafka topic) and publishing records."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from consent.domain import CatalogEntry
from dataplane.federation import refuse_mirrored
from dataplane.idempotency import request_digest
from dataplane.publish import Batch, FramedRecord, NewRecord
from exchange.auditing import AuditRecord
from exchange.errors import Conflict, ExchangeError, Forbidden, InvalidInput
from exchange.identity.tokens import Principal
from exchange.kafka.names import collision
from exchange.settings import Settings
from gateway.access import ANY, access
from gateway.auth import principal, services
from gateway.container import Services
from gateway.problem import TooLarge
from gateway.publish_body import (
    AVRO_CONTENT_TYPE,
    PublishIn,
    decoded,
    frames,
    json_records,
)

router = APIRouter(tags=["topics"])
_TOPIC = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\.[a-zA-Z0-9][a-zA-Z0-9._-]{0,180}$")


class TopicIn(BaseModel):
    name: str = Field(description="`<department>.<dataset>`", examples=["civil-affairs.births"])
    owner: str = Field(description="Owning department id")
    partitions: int = Field(default=3, ge=1, le=256)
    value_subject: str = Field(
        description="Registry subject of the value schema, conventionally `<name>-value`"
    )
    share_type: Literal["unconditional", "conditional", "not_shared"] = "conditional"
    title: str = ""
    description: str = ""
    update_cycle: str = Field(default="realtime", examples=["realtime", "daily", "monthly"])
    cipher: Literal["AES256_GCM", "SM4_GCM"] = "AES256_GCM"
    legal_basis: str | None = Field(default=None, description="Required for not_shared topics")


class TopicOut(BaseModel):
    name: str
    owner: str
    partitions: int
    value_subject: str
    share_type: str
    title: str
    description: str
    update_cycle: str
    cipher: str


class OffsetOut(BaseModel):
    partition: int
    offset: int


class PublishOut(BaseModel):
    topic: str
    schema_id: int
    offsets: list[OffsetOut] = Field(description="Partition/offset per record, in order")


def _out(e: Any) -> TopicOut:
    return TopicOut(
        name=e.topic,
        owner=e.owner,
        partitions=e.partitions,
        value_subject=e.value_subject,
        share_type=e.share_type,
        title=e.title,
        description=e.description,
        update_cycle=e.update_cycle,
        cipher=e.cipher,
    )


@router.post(
    "/v1/topics",
    status_code=status.HTTP_201_CREATED,
    response_model=TopicOut,
    summary="Create a topic: catalog entry and Kafka topic",
)
@access("admin", "own:steward")
async def create_topic(
    body: TopicIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> TopicOut:
    steward_of_owner = who.has("steward") and who.department == body.owner
    if not (who.has("admin") or steward_of_owner):
        raise Forbidden("requires admin, or steward of the owning department")
    if not _TOPIC.match(body.name) or not body.name.startswith(f"{body.owner}."):
        raise InvalidInput("topic name must be '<owner department>.<dataset>'")
    if body.share_type == "not_shared" and not body.legal_basis:
        raise InvalidInput("a not_shared topic needs a legal_basis")
    if svc.federation is not None:
        refuse_mirrored(svc.federation.sites.owner_of, body.name, "its owner site describes it")
    await run_in_threadpool(svc.identity.get_department, body.owner)
    entry = await run_in_threadpool(_create, svc, body)
    await run_in_threadpool(
        svc.audit.append,
        AuditRecord(
            "topic.created",
            actor=who.client_id,
            department=who.department,
            topic=body.name,
            data={
                "owner": body.owner,
                "share_type": body.share_type,
                "partitions": body.partitions,
                "cipher": body.cipher,
            },
        ),
    )
    return _out(entry)


def _create(svc: Services, body: TopicIn) -> Any:
    from datetime import UTC, datetime

    from consent.domain import CatalogEntry

    catalog = svc.catalog
    _refuse_clash(body.name, [e.topic for e in catalog.search()] + svc.kafka.list_topics())
    entry = catalog.create(
        CatalogEntry(
            topic=body.name,
            owner=body.owner,
            title=body.title or body.name,
            description=body.description,
            update_cycle=body.update_cycle,
            share_type=body.share_type,
            value_subject=body.value_subject,
            partitions=body.partitions,
            cipher=body.cipher,
            legal_basis=body.legal_basis,
            created_at=datetime.now(UTC),
        )
    )
    try:
        svc.kafka.create_topic(body.name, body.partitions)
    except Conflict:
        pass  # the Kafka topic outlived an earlier catalog entry: reuse it
    except Exception:
        catalog.delete(body.name)
        try:
            known = svc.kafka.list_topics()
        except ExchangeError:
            known = []
        _refuse_clash(body.name, known)  # lost a race to a clashing topic: say so
        raise
    return entry


def _refuse_clash(name: str, existing: list[str]) -> None:
    if clash := collision(name, existing):
        raise Conflict(
            f"topic {name} clashes with existing topic {clash}: Kafka treats '.' and '_' "
            "in topic names as the same character",
            code="topic_name_clash",
            clashes_with=clash,
        )


@router.get("/v1/topics/{topic}", response_model=TopicOut)
@access(ANY)
async def get_topic(
    topic: str, _: Principal = Depends(principal), svc: Services = Depends(services)
) -> TopicOut:
    return _out(await run_in_threadpool(svc.catalog.get, topic))


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined (for a hand-declared request body)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


def publish_access(
    topic: str, request: Request, svc: Services = Depends(services)
) -> tuple[Principal, CatalogEntry]:
    """The caller (token checked) and the topic's entry if the caller may publish to it, in
    one trip to the thread pool (each trip costs a small publish ~10 % of its CPU).
    Authorised before the body is read: a stranger's upload is not even received."""
    who = principal(request, svc)
    try:
        return who, svc.publisher.authorize(who, topic)
    except Forbidden:
        if svc.federation is not None:  # say why, for a topic the catalog shows as mirrored
            refuse_mirrored(svc.federation.sites.owner_of, topic, "publish to it")
        raise


@router.post(
    "/v1/topics/{topic}/records",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _inline(PublishIn)},
                AVRO_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    response_model=PublishOut,
    summary="Publish a batch atomically (JSON, or Avro in Confluent wire format)",
    description=(
        'JSON body `{"records": [{"key", "value", "headers"}]}` validated against the '
        "topic's latest (or `schema_version`) schema, or `Content-Type: "
        f"{AVRO_CONTENT_TYPE}` with frames `u32 key_len | key | u32 value_len | value` where "
        "`value` is Confluent wire format (magic 0, schema id, Avro body) and key_len "
        "0xFFFFFFFF means no key. The batch is one Kafka transaction: all records are written "
        "or none. Any invalid record → 422 listing index, path and reason. "
        "`Idempotency-Key` makes a retry return the first answer instead of publishing twice. "
        "`Content-Encoding: gzip` is accepted; the decompressed body has the same size limit."
    ),
    responses={
        400: {"description": "Content-Encoding: gzip but the body is not valid gzip"},
        413: {"description": "Body or batch too large (decompressed, for gzip)"},
        415: {"description": "Content-Encoding other than gzip or identity"},
        422: {"description": "Invalid records; nothing written"},
    },
)
@access("own:publisher")
async def publish(
    topic: str,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
    allowed: tuple[Principal, CatalogEntry] = Depends(publish_access),
    svc: Services = Depends(services),
) -> JSONResponse:
    publisher = svc.publisher
    who, entry = allowed
    body = await request.body()  # the size limit is enforced as it streams (gateway.limits)
    body, batch = parse_batch(body, request.headers, svc.settings)
    result, replayed = await run_in_threadpool(
        lambda: publisher.publish(
            who,
            entry,
            batch,
            idempotency_key=idempotency_key,
            request_hash=request_digest(body, topic),
        )
    )
    return JSONResponse(result, headers={"Idempotent-Replayed": "true"} if replayed else None)


class BatchTooLarge(TooLarge):
    code = "batch_too_large"


def parse_batch(body: bytes, headers: Mapping[str, str], settings: Settings) -> tuple[bytes, Batch]:
    """The body after its Content-Encoding (what the idempotency digest covers) and the batch
    it asks for (JSON or Avro frames by Content-Type), within the batch limit. Shared by this
    route and the fast path (:mod:`gateway.publish_fast`), so both read a body alike."""
    body = decoded(body, headers.get("content-encoding", ""), settings.max_body_bytes)
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == AVRO_CONTENT_TYPE:
        batch = Batch([FramedRecord(k, v) for k, v in frames(body)])
    else:
        records, version = json_records(body)
        batch = Batch([NewRecord(k, v, h) for k, v, h in records], version)
    if len(batch.records) > settings.max_batch_records:
        raise BatchTooLarge(
            f"batch has {len(batch.records)} records; the limit is {settings.max_batch_records}"
        )
    return body, batch
