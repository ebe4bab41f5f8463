"""Who owns a subject, which topic it backs, who may change it. Pure: no I/O."""

from __future__ import annotations

import pytest

from schemas.registry.ownership import may_write, owner, topic_of


@pytest.mark.parametrize(
    ("subject", "dept"),
    [
        ("civil.residents-value", "civil"),
        ("civil.residents-key", "civil"),
        ("civil.residents-value-sealed", "civil"),
        ("civil.a/b c-value", "civil"),
        ("civil-affairs.x.y-value", "civil-affairs"),
        ("residents-value", None),  # no department prefix: nobody's
        (".x-value", None),
        ("Civil.x-value", None),  # department ids are lower case
        ("c.x-value", None),  # too short to be a department id
        ("civil/evil.x-value", None),
        ("gov.civil.Person", "gov"),  # RecordNameStrategy: the namespace's first label
    ],
)
def test_owner(subject: str, dept: str | None) -> None:
    assert owner(subject) == dept


@pytest.mark.parametrize(
    ("subject", "topic"),
    [
        ("civil.residents-value", "civil.residents"),
        ("civil.residents-key", "civil.residents"),
        ("civil.residents-value-sealed", "civil.residents"),
        ("civil.residents-key-sealed", "civil.residents"),
        ("civil.address", None),
        ("-value", None),
    ],
)
def test_topic_of(subject: str, topic: str | None) -> None:
    assert topic_of(subject) == topic


def test_may_write() -> None:
    assert may_write("civil.x-value", "civil", admin=False)
    assert not may_write("civil.x-value", "health", admin=False)
    assert not may_write("x-value", "civil", admin=False)  # unowned: admin only
    assert not may_write(None, "civil", admin=False)  # global settings: admin only
    assert may_write(None, "health", admin=True)
    assert may_write("x-value", "health", admin=True)
    assert may_write("civil.x-value", "health", admin=True)
