"""Errors of the consent package, each under the core tree so the gateway maps them.

exchange.errors.ExchangeError
 ├── AgreementNotFound, ConsentNotFound, TopicNotInCatalog (NotFound: also what a caller
 │     sees when it may not know the thing exists)
 ├── InvalidTransition(Conflict)     e.g. approving an agreement that is not pending
 ├── NotShared(Forbidden)            a not_shared topic takes no agreements
 └── CatalogEntryExists(Conflict)
"""

from __future__ import annotations

from exchange.errors import Conflict, Forbidden, NotFound


class AgreementNotFound(NotFound):
    code = "agreement_not_found"


class ConsentNotFound(NotFound):
    code = "consent_not_found"


class TopicNotInCatalog(NotFound):
    code = "topic_not_found"


class CatalogEntryExists(Conflict):
    code = "topic_exists"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class NotShared(Forbidden):
    code = "topic_not_shared"
