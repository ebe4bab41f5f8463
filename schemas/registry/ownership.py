"""Which department owns a subject, and which topic it backs. Pure: no I/O.

Topics are ``<dept>.<dataset>``; Confluent's serializers name their subjects
``<topic>-value`` / ``<topic>-key``, and the gateway adds a ``-sealed`` twin of each. So a
subject whose name starts with ``<dept>.`` belongs to that department; any other subject has
no owner and only an admin may change it (fail closed).
"""

from __future__ import annotations

import re

_DEPARTMENT = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")  # as exchange.identity validates ids
_SUFFIXES = ("-value-sealed", "-key-sealed", "-value", "-key")


def owner(subject: str) -> str | None:
    """The department a subject belongs to, or None."""
    dept, dot, _ = subject.partition(".")
    return dept if dot and _DEPARTMENT.match(dept) else None


def topic_of(subject: str) -> str | None:
    """The topic whose records a subject describes (TopicNameStrategy), or None."""
    for suffix in _SUFFIXES:
        if subject.endswith(suffix) and len(subject) > len(suffix):
            return subject[: -len(suffix)]
    return None


def may_write(subject: str | None, department: str, *, admin: bool) -> bool:
    """May a registry:write caller of ``department`` change ``subject`` (None: global)?"""
    if admin:
        return True
    return subject is not None and owner(subject) == department
