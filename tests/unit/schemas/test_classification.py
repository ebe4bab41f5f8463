from __future__ import annotations

import pytest

from schemas.classification import Classification, FieldInfo, downgrades, field_infos

SCHEMA = {
    "type": "record",
    "name": "Person",
    "namespace": "gov",
    "fields": [
        {"name": "id", "type": "string", "data_subject": True, "classification": "public"},
        {"name": "name", "type": "string", "confluent:tags": ["PII"]},
        {"name": "note", "type": {"type": "string", "confluent:tags": ["PII"]}},
        {"name": "pin", "type": "string", "confluent:tags": ["PII"], "classification": "secret"},
        {
            "name": "address",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Address",
                    "fields": [{"name": "street", "type": "string", "classification": "sensitive"}],
                },
            ],
        },
        {"name": "previous", "type": {"type": "array", "items": "Address"}},
        {"name": "age", "type": "int"},
    ],
}


def test_paths_and_classes() -> None:
    infos = {i.path: i for i in field_infos(SCHEMA)}
    assert {p: i.classification.value for p, i in infos.items()} == {
        "id": "public",
        "name": "sensitive",
        "note": "sensitive",
        "pin": "secret",
        "address": "internal",
        "address.street": "sensitive",
        "previous": "internal",
        "previous.street": "sensitive",
        "age": "internal",
    }
    assert infos["id"].data_subject and not infos["age"].data_subject
    assert infos["age"].avro_type == "int"


def test_accepts_json_text_and_primitives() -> None:
    import json

    assert field_infos(json.dumps(SCHEMA))[0].path == "id"
    assert field_infos("string") == []
    assert field_infos('"string"') == []


def test_recursive_types_terminate() -> None:
    node = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"]}],
    }
    assert [i.path for i in field_infos(node)] == ["next"]


def test_named_types_from_references() -> None:
    top = {"type": "record", "name": "T", "fields": [{"name": "a", "type": "gov.Address"}]}
    named = {"gov.Address": SCHEMA["fields"][4]["type"][1] | {"namespace": "gov"}}  # type: ignore[index]
    assert [i.path for i in field_infos(top, named)] == ["a", "a.street"]


def test_unknown_classification_rejected() -> None:
    bad = {
        "type": "record",
        "name": "B",
        "fields": [{"name": "x", "type": "int", "classification": "top"}],
    }
    with pytest.raises(ValueError, match="classification"):
        field_infos(bad)


def test_downgrades() -> None:
    def fi(path: str, c: Classification) -> FieldInfo:
        return FieldInfo(path, c, False, "string")

    old = [
        fi("a", Classification.SENSITIVE),
        fi("b", Classification.INTERNAL),
        fi("gone", Classification.SECRET),
    ]
    new = [
        fi("a", Classification.PUBLIC),
        fi("b", Classification.SECRET),
        fi("c", Classification.PUBLIC),
    ]
    assert downgrades(old, new) == ["a: sensitive -> public"]


def test_union_branches_sharing_a_field_name_share_the_highest_class() -> None:
    # One path names both fields, and one grant covers both: the path is as classified as
    # the higher of them, so an open (public) twin cannot unlock the secret one.
    schema = {
        "type": "record",
        "name": "U",
        "fields": [
            {
                "name": "u",
                "type": [
                    {
                        "type": "record",
                        "name": "A",
                        "fields": [{"name": "x", "type": "string", "classification": "secret"}],
                    },
                    {
                        "type": "record",
                        "name": "B",
                        "fields": [
                            {"name": "x", "type": "string", "classification": "public"},
                            {"name": "b", "type": "int", "data_subject": True},
                        ],
                    },
                ],
            }
        ],
    }
    infos = field_infos(schema)
    assert [(i.path, i.classification.value) for i in infos] == [
        ("u", "internal"),
        ("u.x", "secret"),
        ("u.b", "internal"),
    ]
    assert [i.path for i in infos if i.data_subject] == ["u.b"]
