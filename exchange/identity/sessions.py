"""Console sessions: a browser signed in as one principal, until it idles, ages out or signs
out. The cookie holds 32 random bytes; the table holds their SHA-256 only, so a database
reader cannot ride a session. Every gateway instance sharing the database sees the same
sessions, and "sign out everywhere" deletes all of a person's rows at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from exchange.db import transaction
from exchange.identity.models import ConsoleSessionRow

IDLE_S = 30 * 60
ABSOLUTE_S = 8 * 3600
TOUCH_S = 60  # last_seen is written at most this often per session


@dataclass(frozen=True)
class SessionInfo:
    id_hash: str
    login: str  # the person, or the external subject
    principal_id: str
    department: str
    roles: frozenset[str]
    issuer: str
    external: bool
    expires_at: int  # the earlier of the idle and the absolute limit


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleSessions:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        idle_s: int = IDLE_S,
        absolute_s: int = ABSOLUTE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self._clock = clock

    def create(
        self,
        *,
        login: str,
        principal_id: str,
        department: str,
        roles: frozenset[str],
        issuer: str,
        external: bool = False,
    ) -> str:
        """A new session; returns the cookie value (never stored)."""
        session_id = secrets.token_urlsafe(32)
        now = int(self._clock())
        with transaction(self.sessions) as s:
            s.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at < now))
            s.add(
                ConsoleSessionRow(
                    id_hash=digest(session_id),
                    login=login,
                    principal_id=principal_id,
                    department=department,
                    roles=sorted(roles),
                    issuer=issuer,
                    external=external,
                    created_at=now,
                    last_seen=now,
                    expires_at=now + self.absolute_s,
                )
            )
        return session_id

    def lookup(self, session_id: str) -> SessionInfo | None:
        """The live session for this cookie value (and note it was used), else None."""
        if not session_id or len(session_id) > 128:
            return None
        now = int(self._clock())
        with transaction(self.sessions) as s:
            row = s.get(ConsoleSessionRow, digest(session_id))
            if row is None:
                return None
            if now >= row.expires_at or now - row.last_seen >= self.idle_s:
                s.delete(row)
                return None
            if now - row.last_seen >= TOUCH_S:
                row.last_seen = now
            return SessionInfo(
                row.id_hash,
                row.login,
                row.principal_id,
                row.department,
                frozenset(row.roles),
                row.issuer,
                row.external,
                min(row.expires_at, row.last_seen + self.idle_s),
            )

    def end(self, session_id: str) -> None:
        with transaction(self.sessions) as s:
            s.execute(
                delete(ConsoleSessionRow).where(ConsoleSessionRow.id_hash == digest(session_id))
            )

    def end_all(self, login: str) -> int:
        """Sign the person out of every browser; how many sessions ended."""
        with transaction(self.sessions) as s:
            result = s.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.login == login))
            return int(getattr(result, "rowcount", 0) or 0)
