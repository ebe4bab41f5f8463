"""Configuration (compatibility level, normalisation) and mode, per subject or global."""

from __future__ import annotations

from dataclasses import dataclass

from exchange.db import transaction
from schemas import store
from schemas.compatibility import DEFAULT_LEVEL, Level
from schemas.errors import OperationNotPermitted, SubjectConfigNotFound, SubjectModeNotFound
from schemas.models import SubjectRow
from schemas.registry.base import RegistryBase
from schemas.registry.types import Mode


@dataclass(frozen=True)
class Config:
    compatibility: Level
    normalize: bool | None = None


def _no_config(subject: str) -> SubjectConfigNotFound:
    return SubjectConfigNotFound(
        f"Subject '{subject}' does not have subject-level compatibility configured"
    )


def _no_mode(subject: str) -> SubjectModeNotFound:
    return SubjectModeNotFound(f"Subject '{subject}' does not have subject-level mode configured")


class Settings(RegistryBase):
    # -- config --------------------------------------------------------------------------
    def set_config(
        self,
        subject: str | None,
        level: str | None,
        *,
        normalize: bool | None = None,
        actor: str = "system",
    ) -> Config:
        """Set what is given (the level, normalisation or both); the rest stays."""
        parsed = Level.parse(level) if level is not None or normalize is None else None
        with transaction(self.sessions) as s:
            row = store.lock_subject(s, subject or store.GLOBAL)
            if parsed is not None:
                row.compatibility = parsed.value
            if normalize is not None:
                row.normalize = normalize
            out = Config(Level(row.compatibility or DEFAULT_LEVEL), row.normalize)
        self._audit(
            "schema.config_changed",
            actor,
            subject=subject,
            compatibility=parsed.value if parsed else None,
            normalize=normalize,
        )
        return out

    def get_config(self, subject: str | None = None, *, default_to_global: bool = False) -> Config:
        with transaction(self.sessions) as s:
            if subject is None or default_to_global:
                key = subject or store.GLOBAL
                norm = self._setting(s, key, "normalize")
                return Config(self._level(s, key), None if norm is None else bool(norm))
            row = store.setting(s, subject)
            if row is None or (row.compatibility is None and row.normalize is None):
                raise _no_config(subject)
            return Config(Level(row.compatibility or DEFAULT_LEVEL), row.normalize)

    def delete_config(self, subject: str | None, *, actor: str = "system") -> Config:
        """Remove the subject's config (or reset the global one); returns the previous one."""
        with transaction(self.sessions) as s:
            row = store.lock_subject(s, subject or store.GLOBAL)
            previous = Config(Level(row.compatibility or DEFAULT_LEVEL), row.normalize)
            if subject is not None and row.compatibility is None and row.normalize is None:
                raise _no_config(subject)
            row.compatibility, row.normalize = None, None
        self._audit("schema.config_changed", actor, subject=subject, compatibility=None)
        return previous

    # -- mode ----------------------------------------------------------------------------
    def get_mode(self, subject: str | None = None, *, default_to_global: bool = False) -> Mode:
        with transaction(self.sessions) as s:
            row = store.setting(s, subject or store.GLOBAL)
            if row is not None and row.mode:
                return Mode(row.mode)
            if subject is not None and not default_to_global:
                raise _no_mode(subject)
            return self._mode(s, None)

    def set_mode(
        self, subject: str | None, mode: str, *, force: bool = False, actor: str = "system"
    ) -> Mode:
        parsed = Mode.parse(mode)
        with transaction(self.sessions) as s:
            row = store.lock_subject(s, subject or store.GLOBAL)
            if parsed is Mode.IMPORT and not force:
                live = store.versions(s, subject) if subject else store.subjects(s)
                if live:
                    raise OperationNotPermitted("Cannot import since found existing subjects")
            row.mode = parsed.value
        self._audit("schema.mode_changed", actor, subject=subject, mode=parsed.value)
        return parsed

    def delete_mode(self, subject: str, *, actor: str = "system") -> Mode:
        with transaction(self.sessions) as s:
            row: SubjectRow = store.lock_subject(s, subject)
            previous = row.mode
            if previous is None:
                raise _no_mode(subject)
            row.mode = None
        self._audit("schema.mode_changed", actor, subject=subject, mode=None)
        return Mode(previous)
