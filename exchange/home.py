"""The exchange home is private: directory 0700, every file in it 0600."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from exchange.errors import ConfigurationError

PRIVATE_UMASK = 0o077


def secure_home(home: Path) -> None:
    """Make this process create owner-only files, and close up a home made before that.

    The umask is the robust part: SQLite creates ``-wal``/``-shm``/journal files lazily and
    keys, logs and checkpoints are written in many places, so no per-file chmod can keep up.
    The walk tightens files an older exchange (or another umask) left group/other-readable.
    """
    os.umask(PRIVATE_UMASK)
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigurationError(f"exchange home {home} is not writable: {exc.strerror}") from exc
    _tighten(home)
    for root, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            _tighten(Path(root) / name)


def _tighten(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # Kafka may delete a segment meanwhile
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
            return
        try:
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
        except PermissionError as exc:
            raise ConfigurationError(
                f"cannot make {path} private (owned by another user?): {exc.strerror}"
            ) from exc


def loose_paths(home: Path) -> list[str]:
    """Paths under ``home`` (itself included) that group or others may access."""
    found = [] if not home.stat().st_mode & 0o077 else [f"{home} {home.stat().st_mode:o}"]
    for root, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            p = Path(root) / name
            with contextlib.suppress(FileNotFoundError):
                mode = p.lstat().st_mode
                if not stat.S_ISLNK(mode) and mode & 0o077:
                    found.append(f"{p} {stat.S_IMODE(mode):o}")
    return found
