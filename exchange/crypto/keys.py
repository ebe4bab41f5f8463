"""The key manager: DEK versions per topic + field, wrapped by the owner's KEK.

DEKs are created on first use, rotated by age/use-count policy or on demand, re-wrapped when
the owner's KEK rotates, and shredded (the wrapped key is deleted; the row stays as a
tombstone). Every key operation appends an :class:`AuditRecord`. Non-secret row data is cached
for ``meta_ttl_seconds``; unwrapped DEKs only in the :class:`CachingKms` (bounded TTL).
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import TTLCache
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from exchange.auditing import AuditRecord, AuditSink
from exchange.crypto import ciphers, envelope
from exchange.crypto.ciphers import CipherSpec
from exchange.crypto.errors import IntegrityFailure, KekNotFound, KeyShredded
from exchange.crypto.kms import KekRef
from exchange.crypto.kms_wrappers import CachingKms
from exchange.crypto.models import DekFamilyRow, DekVersionRow
from exchange.db import transaction
from exchange.errors import DependencyUnavailable

ACTIVE, RETIRED, SHREDDED = "active", "retired", "shredded"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RotationPolicy:
    """Rotate a DEK when it is older than ``max_age`` or has sealed ``max_uses`` values.

    The use count is per process; the default stays far below GCM's 2**32 random-nonce bound
    even with many gateway instances.
    """

    max_age: timedelta | None = timedelta(days=90)
    max_uses: int | None = 1 << 24


@dataclass(frozen=True)
class KeyInfo:
    dek_id: str
    topic: str
    field: str
    owner: str
    version: int
    cipher: str
    state: str
    kek: str
    created_at: datetime
    shredded_at: datetime | None


@dataclass(frozen=True)
class Dek:
    dek_id: str
    version: int
    cipher: CipherSpec
    topic: str
    field: str
    key: bytes = dataclasses.field(repr=False)
    aead: ciphers.Aead = dataclasses.field(repr=False, compare=False)
    prefix: bytes = b""  # envelope header without nonce


@dataclass(slots=True)
class HotDek:
    """A ready DEK for the data path, valid until ``expires`` (monotonic seconds) and for
    ``left`` more seals (its share of the use-count policy; counts are approximate under
    concurrency, far below the GCM bound either way)."""

    dek: Dek
    expires: float
    granted: float = math.inf
    left: float = math.inf


@dataclass(frozen=True)
class _Meta:
    """One DEK version as stored (no secret: the key is wrapped)."""

    dek_id: str
    version: int
    topic: str
    field: str
    owner: str
    cipher: str
    wrapped: bytes | None
    kek: KekRef
    created_at: datetime


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # SQLite drops the zone


def _meta(fam: DekFamilyRow, row: DekVersionRow) -> _Meta:
    return _Meta(
        fam.dek_id,
        row.version,
        fam.topic,
        fam.field,
        fam.owner,
        row.cipher,
        row.wrapped,
        KekRef(row.kek_alias, row.kek_version),
        _aware(row.created_at),
    )


def _info(fam: DekFamilyRow, row: DekVersionRow) -> KeyInfo:
    return KeyInfo(
        fam.dek_id,
        fam.topic,
        fam.field,
        fam.owner,
        row.version,
        row.cipher,
        row.state,
        str(KekRef(row.kek_alias, row.kek_version)),
        _aware(row.created_at),
        _aware(row.shredded_at) if row.shredded_at else None,
    )


class KeyManager:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        kms: CachingKms,
        audit: AuditSink,
        *,
        policy: RotationPolicy | None = None,
        meta_ttl_seconds: float = 60,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.kms = kms
        self.audit = audit
        self.policy = policy or RotationPolicy()
        self.clock = clock
        self._current: TTLCache[tuple[str, str], _Meta] = TTLCache(10_000, meta_ttl_seconds)
        self._by_id: TTLCache[tuple[str, int], _Meta] = TTLCache(100_000, meta_ttl_seconds)
        self._uses: dict[tuple[str, int], int] = {}
        self._lock = threading.RLock()
        # Hot path: ready DEKs by (topic, path, cipher) for sealing and (dek_id, version) for
        # opening; bounded, and no entry outlives ``meta_ttl_seconds`` (nor the key's max age).
        self.hot_ttl = meta_ttl_seconds
        self._hot_seal: dict[tuple[str, str, str], HotDek] = {}
        self._hot_open: dict[tuple[str, int] | bytes, HotDek] = {}
        # Bumped by every forget: a key loaded before a shred/rotation is not made ready after.
        self._generation = 0

    # -- the data path ------------------------------------------------------------------------
    def current(self, topic: str, path: str, owner: str, cipher: str) -> Dek:
        """The DEK to seal ``topic``/``path`` with now; creates or rotates it when due."""
        key = (topic, path, cipher)
        hot = self._hot_seal.get(key)
        if hot is not None and hot.left > 0 and hot.expires > time.monotonic():
            hot.left -= 1
            return hot.dek
        spec = ciphers.spec_named(cipher)
        with self._lock:
            generation = self._generation
            old = self._hot_seal.pop(key, None)
            if old is not None:
                self._fold(old)
            meta = self._current.get((topic, path))
            if meta is None or self._due(meta, spec):
                meta = self._load_current(topic, path, owner, spec)
            ref = (meta.dek_id, meta.version)
            self._uses[ref] = used = self._uses.get(ref, 0) + 1
        dek = self._unwrap(meta)
        ttl = self.hot_ttl
        if self.policy.max_age is not None:
            ttl = min(ttl, (meta.created_at + self.policy.max_age - self.clock()).total_seconds())
        left = math.inf if self.policy.max_uses is None else self.policy.max_uses - used
        self._remember(self._hot_seal, key, dek, generation, ttl, left)
        return dek

    def _fold(self, hot: HotDek) -> None:
        """Add the seals a retired ready-key entry made to its DEK's use count."""
        if hot.granted != math.inf:
            ref = (hot.dek.dek_id, hot.dek.version)
            self._uses[ref] = self._uses.get(ref, 0) + int(hot.granted - hot.left)

    def get(self, dek_id: str, version: int) -> Dek:
        """The DEK version named by an envelope; KeyShredded if destroyed."""
        hot = self._hot_open.get((dek_id, version))
        if hot is not None and hot.expires > time.monotonic():
            return hot.dek
        with self._lock:
            generation = self._generation
            meta = self._by_id.get((dek_id, version))
        if meta is None:
            meta = self._load(dek_id, version, generation)
        if meta.wrapped is None:
            raise KeyShredded(f"key {dek_id} v{version} was shredded")
        dek = self._unwrap(meta)
        self._remember(self._hot_open, (dek_id, version), dek, generation, self.hot_ttl)
        # Also by the envelope header it opens (cipher, id, version as bytes): see ready().
        self._remember(self._hot_open, dek.prefix, dek, generation, self.hot_ttl)
        return dek

    @property
    def generation(self) -> int:
        """Grows by one whenever ready keys are taken out (shredding, rotation, KEK rotation,
        a cleared cache): what was opened under an older generation may use a key that is
        gone now."""
        return self._generation

    def ready_table(self) -> Mapping[Any, HotDek]:
        """What :meth:`ready` looks in, live: the ready DEKs by envelope prefix (and by DEK id
        and version), an entry usable while its ``expires`` is after ``time.monotonic()``.
        An entry taken out (shredding, rotation, eviction, replacement) is expired at once,
        so a caller may keep entries it found: while one is unexpired it is in the table."""
        return self._hot_open

    def ready(self, prefix: bytes) -> Dek | None:
        """The DEK whose envelopes start with ``prefix`` (format, cipher id, DEK id and
        version: :func:`envelope.prefix`) if it is ready in memory, else None — then parse the
        header and call :meth:`get`. No I/O; forgotten on shred and rotation like get's."""
        hot = self._hot_open.get(prefix)
        if hot is not None and hot.expires > time.monotonic():
            return hot.dek
        return None

    def _remember(
        self,
        table: dict[Any, HotDek],
        key: Any,
        dek: Dek,
        generation: int,
        ttl: float,
        left: float = math.inf,
    ) -> None:
        with self._lock:
            if generation != self._generation:
                return  # shredded or rotated meanwhile: next use looks again
            if len(table) >= 10_000:
                for hot in table.values():
                    hot.expires = -math.inf
                table.clear()
            old = table.get(key)
            if old is not None:
                old.expires = -math.inf
            table[key] = HotDek(dek, time.monotonic() + ttl, left, left)

    def clear_cache(self) -> None:
        with self._lock:
            self._current.clear()
            self._by_id.clear()
        self._forget(None)
        self.kms.clear()

    def _forget(self, dek_id: str | None) -> None:
        """Drop ready DEKs (all, or one family's) after rotation, shredding, KEK rotation."""
        with self._lock:
            self._generation += 1
            for key in [k for k, m in self._by_id.items() if dek_id in (None, m.dek_id)]:
                self._by_id.pop(key, None)
            tables: tuple[dict[Any, HotDek], ...] = (self._hot_seal, self._hot_open)
            for table in tables:
                for k in [k for k, h in table.items() if dek_id in (None, h.dek.dek_id)]:
                    hot = table.pop(k)
                    hot.expires = -math.inf
                    self._fold(hot)

    def _unwrap(self, meta: _Meta) -> Dek:
        if meta.wrapped is None:
            raise KeyShredded(f"key {meta.dek_id} v{meta.version} was shredded")
        key = self.kms.unwrap(meta.kek, meta.wrapped)
        spec = ciphers.spec_named(meta.cipher)
        return Dek(
            meta.dek_id,
            meta.version,
            spec,
            meta.topic,
            meta.field,
            key,
            ciphers.aead_for(spec, key),
            envelope.prefix(spec, meta.dek_id, meta.version),
        )

    def _due(self, meta: _Meta, spec: CipherSpec) -> bool:
        p = self.policy
        uses = self._uses.get((meta.dek_id, meta.version), 0)
        return (
            meta.cipher != spec.name
            or (p.max_uses is not None and uses >= p.max_uses)
            or (p.max_age is not None and self.clock() - meta.created_at >= p.max_age)
        )

    def _load(self, dek_id: str, version: int, generation: int) -> _Meta:
        with transaction(self.sessions) as s:
            row = s.get(DekVersionRow, (dek_id, version))
            fam = s.get(DekFamilyRow, dek_id)
            if row is None or fam is None:
                raise IntegrityFailure("envelope names an unknown key")
            meta = _meta(fam, row)
        with self._lock:
            if generation == self._generation:  # not shredded/rotated while we read
                self._by_id[(dek_id, version)] = meta
        return meta

    def _load_current(self, topic: str, path: str, owner: str, spec: CipherSpec) -> _Meta:
        fam = self._family(topic, path, owner)
        meta = self._active(fam)
        if meta is None or self._due(meta, spec):
            event = "key.created" if meta is None else "key.rotated"
            seen = None if meta is None else meta.version
            meta = self._new_version(fam, spec, event, seen=seen, force=False)
        self._current[(topic, path)] = meta
        return meta

    def _active(self, fam: DekFamilyRow) -> _Meta | None:
        with transaction(self.sessions) as s:
            row = s.scalars(
                select(DekVersionRow)
                .where(DekVersionRow.dek_id == fam.dek_id, DekVersionRow.state == ACTIVE)
                .order_by(DekVersionRow.version.desc())
            ).first()
            return _meta(fam, row) if row is not None else None

    # -- creating -----------------------------------------------------------------------------
    def _family(self, topic: str, path: str, owner: str) -> DekFamilyRow:
        query = select(DekFamilyRow).where(DekFamilyRow.topic == topic, DekFamilyRow.field == path)
        with transaction(self.sessions) as s:
            fam = s.scalars(query).first()
        if fam is not None:
            return fam
        fam = DekFamilyRow(
            dek_id=secrets.token_hex(8),
            topic=topic,
            field=path,
            owner=owner,
            created_at=self.clock(),
        )
        try:
            with transaction(self.sessions) as s:
                s.add(fam)
        except DependencyUnavailable as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
            with transaction(self.sessions) as s:  # another instance created it first
                fam = s.scalars(query).one()
        return fam

    def ensure_kek(self, department: str, *, actor: str = "system") -> KekRef:
        """The department's current KEK, created (and audited) if it has none."""
        return self._kek(department, actor)

    def _kek(self, owner: str, actor: str) -> KekRef:
        try:
            return self.kms.current_kek(owner)
        except KekNotFound:
            kek = self.kms.create_kek(owner)
            self.audit.append(
                AuditRecord("kek.created", actor=actor, department=owner, data={"kek": str(kek)})
            )
            return kek

    def _new_version(
        self,
        fam: DekFamilyRow,
        spec: CipherSpec,
        event: str,
        actor: str = "system",
        *,
        seen: int | None = None,
        force: bool = True,
    ) -> _Meta:
        """Add a version and retire the active one. Unless ``force``, an active version other
        than ``seen`` means another instance got there first: use that one instead."""
        kek = self._kek(fam.owner, actor)
        wrapped = self.kms.wrap(kek, ciphers.new_key(spec))
        for _attempt in range(5):
            try:
                with transaction(self.sessions) as s:
                    # One read of the family's rows: SQLite reads outside a write lock are
                    # not one snapshot, and a row loaded twice would clash with the new one.
                    rows = list(
                        s.scalars(select(DekVersionRow).where(DekVersionRow.dek_id == fam.dek_id))
                    )
                    actives = [r for r in rows if r.state == ACTIVE]
                    active = max(actives, key=lambda r: r.version, default=None)
                    if not force and active is not None and active.version != seen:
                        return _meta(fam, active)
                    top = max((r.version for r in rows), default=0)
                    for old in actives:
                        old.state = RETIRED
                    row = DekVersionRow(
                        dek_id=fam.dek_id,
                        version=top + 1,
                        cipher=spec.name,
                        wrapped=wrapped,
                        kek_alias=kek.alias,
                        kek_version=kek.version,
                        state=ACTIVE,
                        created_at=self.clock(),
                    )
                    s.add(row)
                    s.flush()
                    self.audit.append(self._record(event, actor, fam, row))
                    return _meta(fam, row)
            except DependencyUnavailable as exc:
                if not isinstance(exc.__cause__, IntegrityError):
                    raise
        raise DependencyUnavailable("could not allocate a DEK version (contention)")

    def _record(self, event: str, actor: str, fam: DekFamilyRow, row: DekVersionRow) -> AuditRecord:
        data = {
            "field": fam.field,
            "dek_id": fam.dek_id,
            "version": row.version,
            "cipher": row.cipher,
            "kek": str(KekRef(row.kek_alias, row.kek_version)),
        }
        return AuditRecord(event, actor=actor, department=fam.owner, topic=fam.topic, data=data)

    # -- administration -----------------------------------------------------------------------
    def _families(self, topic: str | None, path: str | None) -> list[DekFamilyRow]:
        query = select(DekFamilyRow).order_by(DekFamilyRow.topic, DekFamilyRow.field)
        if topic is not None:
            query = query.where(DekFamilyRow.topic == topic)
        if path is not None:
            query = query.where(DekFamilyRow.field == path)
        with transaction(self.sessions) as s:
            return list(s.scalars(query))

    def list_keys(self, topic: str | None = None) -> list[KeyInfo]:
        query = (
            select(DekFamilyRow, DekVersionRow)
            .join(DekVersionRow, DekVersionRow.dek_id == DekFamilyRow.dek_id)
            .order_by(DekFamilyRow.topic, DekFamilyRow.field, DekVersionRow.version)
        )
        if topic is not None:
            query = query.where(DekFamilyRow.topic == topic)
        with transaction(self.sessions) as s:
            return [_info(f, v) for f, v in s.execute(query).tuples()]

    def rotate(
        self, topic: str, field: str | None = None, *, actor: str = "system"
    ) -> list[KeyInfo]:
        """A new DEK version for each field of ``topic`` (or one field); old ones stay readable."""
        out = []
        for fam in self._families(topic, field):
            cipher = self._current_cipher(fam.dek_id)
            meta = self._new_version(fam, ciphers.spec_named(cipher), "key.rotated", actor)
            with self._lock:
                self._current[(fam.topic, fam.field)] = meta
            self._forget(fam.dek_id)
            out.append(self._info_of(meta))
        return out

    def rotate_due(self, *, actor: str = "system") -> list[KeyInfo]:
        """Apply the rotation policy to every family (for a periodic job): new versions."""
        out = []
        for fam in self._families(None, None):
            meta = self._active(fam)
            if meta is None or not self._due(meta, ciphers.spec_named(meta.cipher)):
                continue
            new = self._new_version(fam, ciphers.spec_named(meta.cipher), "key.rotated", actor)
            with self._lock:
                self._current[(fam.topic, fam.field)] = new
            self._forget(fam.dek_id)
            out.append(self._info_of(new))
        return out

    def _current_cipher(self, dek_id: str) -> str:
        with transaction(self.sessions) as s:
            cipher = s.scalars(
                select(DekVersionRow.cipher)
                .where(DekVersionRow.dek_id == dek_id)
                .order_by(DekVersionRow.version.desc())
            ).first()
        return cipher or "AES256_GCM"

    def _info_of(self, meta: _Meta) -> KeyInfo:
        return KeyInfo(
            meta.dek_id,
            meta.topic,
            meta.field,
            meta.owner,
            meta.version,
            meta.cipher,
            ACTIVE,
            str(meta.kek),
            meta.created_at,
            None,
        )

    def shred(
        self,
        topic: str,
        field: str | None = None,
        before: datetime | None = None,
        *,
        actor: str = "system",
    ) -> int:
        """Destroy DEK versions of ``topic`` (one field, created before ``before``): count."""
        count = 0
        now = self.clock()
        for fam in self._families(topic, field):
            destroyed: list[tuple[KekRef, bytes]] = []
            with transaction(self.sessions) as s:
                rows = s.scalars(
                    select(DekVersionRow).where(
                        DekVersionRow.dek_id == fam.dek_id, DekVersionRow.state != SHREDDED
                    )
                ).all()
                for row in rows:
                    if before is not None and _aware(row.created_at) >= before:
                        continue
                    if row.wrapped is not None:
                        destroyed.append((KekRef(row.kek_alias, row.kek_version), row.wrapped))
                    row.wrapped, row.state, row.shredded_at = None, SHREDDED, now
                    self.audit.append(self._record("key.shredded", actor, fam, row))
                    count += 1
            # After the commit: from here on nothing can load these keys again.
            with self._lock:
                self._current.pop((fam.topic, fam.field), None)
            self._forget(fam.dek_id)
            for kek, wrapped in destroyed:
                self.kms.forget(kek, wrapped)
        return count

    def rotate_kek(self, department: str, *, actor: str = "system") -> int:
        """New KEK version for ``department``; re-wrap its DEKs (Kafka data untouched): count."""
        old = self.kms.current_kek(department)
        new = self.kms.create_kek(department)
        count = 0
        with transaction(self.sessions) as s:
            rows = s.scalars(
                select(DekVersionRow).where(
                    DekVersionRow.kek_alias == department, DekVersionRow.wrapped.is_not(None)
                )
            ).all()
            for row in rows:
                assert row.wrapped is not None
                kek = KekRef(row.kek_alias, row.kek_version)
                row.wrapped = self.kms.wrap(new, self.kms.unwrap(kek, row.wrapped))
                row.kek_version = new.version
                count += 1
            data = {"from": str(old), "to": str(new), "rewrapped": count}
            self.audit.append(
                AuditRecord("kek.rotated", actor=actor, department=department, data=data)
            )
        with self._lock:
            self._current.clear()
            self._by_id.clear()
        self._forget(None)
        return count
