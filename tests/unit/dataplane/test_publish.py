"""The publish use case without a broker: authorisation, validation, sealing, atomic write,
audit-before-visible and idempotency (real registry, catalog, crypto and database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataplane.publish import Batch, BatchRejected, FramedRecord, NewRecord
from exchange import wire
from exchange.errors import Conflict, DependencyUnavailable, Forbidden, KafkaUnavailable
from tests.support.scenario import PERSON_SCHEMA, person
from tests.unit.dataplane.world import World, build_world, principal

PUBLISHER = principal("health", "publisher")


@pytest.fixture
def w(tmp_path: Path) -> World:
    return build_world(tmp_path)


def test_only_the_owner_s_publishers_may_publish_and_strangers_learn_nothing(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    assert w.publisher.authorize(PUBLISHER, entry.topic).topic == entry.topic
    with pytest.raises(Forbidden) as other:
        w.publisher.authorize(principal("civil", "publisher"), entry.topic)
    with pytest.raises(Forbidden) as missing:
        w.publisher.authorize(principal("civil", "publisher"), "civil.nothing")
    assert str(other.value).replace(entry.topic, "T") == str(missing.value).replace(
        "civil.nothing", "T"
    )
    with pytest.raises(Forbidden):
        w.publisher.authorize(principal("health", "subscriber"), entry.topic)


def test_sensitive_fields_are_sealed_before_kafka_and_the_event_is_audited(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    records = [NewRecord(f"k{i}", person(i)) for i in range(3)]
    result, replayed = w.publisher.publish(PUBLISHER, entry, Batch(records))
    assert not replayed and [o["offset"] for o in result["offsets"]] == [0, 1, 2]
    raw = b"".join(r.value for r in w.kafka.logs[entry.topic])
    for i in range(3):
        assert person(i)["citizen_id"].encode() not in raw
        assert person(i)["address"]["street"].encode() not in raw
        assert f"Resident {i}".encode() in raw  # public fields stay in clear
    published = [e for e in w.audit.records if e.type == "record.published"]
    assert len(published) == 1 and published[0].data["count"] == 3
    assert set(published[0].subjects) == {person(i)["citizen_id"] for i in range(3)}


def test_one_bad_record_refuses_the_whole_batch_naming_it(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    bad = {**person(1), "income": "lots"}
    batch = Batch([NewRecord(None, person(0)), NewRecord(None, bad), NewRecord(None, 7)])
    with pytest.raises(BatchRejected) as exc:
        w.publisher.publish(PUBLISHER, entry, batch)
    errors = exc.value.details["errors"]
    assert {(e["index"], e["path"]) for e in errors} >= {(1, "income"), (2, "")}
    assert entry.topic not in w.kafka.logs
    assert not [e for e in w.audit.records if e.type == "record.published"]


def test_frames_must_use_a_version_of_the_topic_s_own_subject(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    other = w.topic({"type": "record", "name": "X", "fields": [{"name": "a", "type": "int"}]})
    other_id = w.registry.version(other.value_subject).id
    frame = wire.encode(other_id, w.registry.by_id(other_id).parsed, {"a": 1})
    with pytest.raises(BatchRejected) as exc:
        w.publisher.publish(PUBLISHER, entry, Batch([FramedRecord(None, frame)]))
    assert "is not a version of" in exc.value.details["errors"][0]["reason"]
    assert entry.topic not in w.kafka.logs


def test_frames_are_sealed_like_json(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    plain_id = w.registry.version(entry.value_subject).id
    frame = wire.encode(plain_id, w.registry.by_id(plain_id).parsed, person(5))
    w.publisher.publish(PUBLISHER, entry, Batch([FramedRecord(b"k", frame)]))
    (stored,) = w.kafka.logs[entry.topic]
    assert person(5)["citizen_id"].encode() not in stored.value
    assert dict(stored.headers)["exchange.schema_id"] == str(plain_id).encode()


def test_audit_outage_means_nothing_is_written(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)

    def down(_: object) -> None:
        raise DependencyUnavailable("audit log unavailable")

    w.audit.append_many = down  # type: ignore[method-assign]
    with pytest.raises(DependencyUnavailable):
        w.publisher.publish(PUBLISHER, entry, Batch([NewRecord(None, person(1))]))
    assert entry.topic not in w.kafka.logs


def test_a_failed_commit_is_audited_as_aborted(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    w.kafka.fail_commit = True
    with pytest.raises(KafkaUnavailable):
        w.publisher.publish(PUBLISHER, entry, Batch([NewRecord(None, person(1))]))
    assert [e.type for e in w.audit.records][-2:] == ["record.published", "record.publish_aborted"]


def test_idempotency_replays_the_first_answer_and_refuses_another_body(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    batch = Batch([NewRecord(None, person(1))])
    first, replayed = w.publisher.publish(
        PUBLISHER, entry, batch, idempotency_key="k1", request_hash="h1"
    )
    again, replayed = w.publisher.publish(
        PUBLISHER, entry, batch, idempotency_key="k1", request_hash="h1"
    )
    assert replayed and again == first and len(w.kafka.logs[entry.topic]) == 1
    with pytest.raises(Conflict):
        w.publisher.publish(PUBLISHER, entry, batch, idempotency_key="k1", request_hash="h2")


def test_a_failed_publish_frees_its_idempotency_key(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    w.kafka.fail_commit = True
    with pytest.raises(KafkaUnavailable):
        w.publisher.publish(
            PUBLISHER, entry, Batch([NewRecord(None, person(1))]), idempotency_key="k"
        )
    w.kafka.fail_commit = False
    _, replayed = w.publisher.publish(
        PUBLISHER, entry, Batch([NewRecord(None, person(1))]), idempotency_key="k"
    )
    assert not replayed and len(w.kafka.logs[entry.topic]) == 1


def test_no_sealer_fails_closed_for_sensitive_schemas(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    w.publisher.sealer = None
    with pytest.raises(DependencyUnavailable):
        w.publisher.publish(PUBLISHER, entry, Batch([NewRecord(None, person(1))]))
    assert entry.topic not in w.kafka.logs
    public = w.topic({"type": "record", "name": "P", "fields": [{"name": "a", "type": "int"}]})
    w.publisher.publish(PUBLISHER, public, Batch([NewRecord(None, {"a": 1})]))
    assert json.loads(json.dumps(len(w.kafka.logs[public.topic]))) == 1


def test_submit_answers_as_publish_does_through_a_future(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    first, _ = w.publisher.publish(PUBLISHER, entry, Batch([NewRecord("k0", person(0))]))
    later = w.publisher.submit(PUBLISHER, entry, Batch([NewRecord("k1", person(1))]))
    assert later.result(timeout=10) == {**first, "offsets": [{"partition": 0, "offset": 1}]}
    events = [e for e in w.audit.records if e.type == "record.published"]
    assert [e.subjects for e in events] == [(person(0)["citizen_id"],), (person(1)["citizen_id"],)]
    assert person(1)["citizen_id"].encode() not in w.kafka.logs[entry.topic][1].value
    with pytest.raises(BatchRejected):  # refused at once, before any group
        w.publisher.submit(PUBLISHER, entry, Batch([NewRecord(None, 7)]))
    w.kafka.fail_commit = True
    failed = w.publisher.submit(PUBLISHER, entry, Batch([NewRecord("k2", person(2))]))
    with pytest.raises(KafkaUnavailable):
        failed.result(timeout=10)
    assert len(w.kafka.logs[entry.topic]) == 2
