"""Named connection profiles: a gateway URL and one client's credentials, stored 0600.

The file is ``$EXCHANGE_CONFIG`` if set, else ``$XDG_CONFIG_HOME/exchange/profiles.toml``
(``~/.config/exchange/profiles.toml`` when XDG_CONFIG_HOME is unset)::

    default = "health-publisher"          # optional: the profile used when none is named

    [profiles.health-publisher]
    url = "http://127.0.0.1:8080"
    client_id = "health-ab12"
    client_secret = "..."

``exchange login --profile NAME`` writes it; the CLI and ``ExchangeClient.from_profile``
read it. Nothing here talks to the network.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.errors import ConfigurationError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class UnknownProfile(ConfigurationError):
    code = "unknown_profile"


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # never print the secret by accident
        return f"Profile(name={self.name!r}, url={self.url!r}, client_id={self.client_id!r})"


def config_path() -> Path:
    explicit = os.environ.get("EXCHANGE_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "exchange" / "profiles.toml"


@dataclass
class ProfileStore:
    """The profiles file: read whole, written whole (atomically, 0600)."""

    path: Path
    default: str | None
    profiles: dict[str, Profile]

    @classmethod
    def load(cls, path: Path | None = None) -> ProfileStore:
        path = path or config_path()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path, None, {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read the profiles file {path}: {exc}") from None
        profiles: dict[str, Profile] = {}
        for name, body in (raw.get("profiles") or {}).items():
            try:
                profiles[name] = Profile(
                    name, str(body["url"]), str(body["client_id"]), str(body["client_secret"])
                )
            except (KeyError, TypeError):
                raise ConfigurationError(
                    f"profile {name!r} in {path} needs url, client_id and client_secret"
                ) from None
        default = raw.get("default")
        return cls(path, str(default) if default else None, profiles)

    def get(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles)) or "none yet"
            raise UnknownProfile(
                f"no profile {name!r} in {self.path} (known: {known}); "
                f"create it with: exchange login --profile {name}"
            ) from None

    def put(self, profile: Profile, make_default: bool = False) -> None:
        if not NAME.match(profile.name):
            raise ConfigurationError(
                f"profile name {profile.name!r}: use letters, digits, '.', '_' or '-'"
            )
        self.profiles[profile.name] = profile
        if make_default or self.default is None:
            self.default = profile.name

    def remove(self, name: str) -> None:
        self.get(name)
        del self.profiles[name]
        if self.default == name:
            self.default = None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.dumps())
        os.chmod(tmp, 0o600)  # also when the file existed with wider permissions
        os.replace(tmp, self.path)

    def dumps(self) -> str:
        # JSON string escapes are valid TOML basic-string escapes (ensure_ascii: \\uXXXX).
        lines = ["# exchange CLI profiles (written by `exchange login`); keep this file private"]
        if self.default:
            lines.append(f"default = {json.dumps(self.default)}")
        for p in sorted(self.profiles.values(), key=lambda p: p.name):
            lines += [
                "",
                f"[profiles.{json.dumps(p.name)}]",
                f"url = {json.dumps(p.url)}",
                f"client_id = {json.dumps(p.client_id)}",
                f"client_secret = {json.dumps(p.client_secret)}",
            ]
        return "\n".join(lines) + "\n"


def profile_from_env(name: str | None = None, path: Path | None = None) -> Profile:
    """The profile the environment names: ``name``, else ``$EXCHANGE_PROFILE``, else the
    file's default; ``EXCHANGE_URL``/``EXCHANGE_CLIENT_ID``/``EXCHANGE_CLIENT_SECRET`` override
    its fields (all three set: no file needed)."""
    env = {k: os.environ.get(f"EXCHANGE_{k.upper()}") or None for k in _FIELDS}
    name = name or os.environ.get("EXCHANGE_PROFILE") or None
    base: dict[str, Any] = {}
    if name or not all(env.values()):
        store = ProfileStore.load(path)
        chosen = name or store.default
        if chosen is None:
            raise ConfigurationError(
                f"no profile: run `exchange login --profile NAME` (file {store.path}) "
                "or set EXCHANGE_URL, EXCHANGE_CLIENT_ID and EXCHANGE_CLIENT_SECRET"
            )
        p = store.get(chosen)
        name = p.name
        base = {"url": p.url, "client_id": p.client_id, "client_secret": p.client_secret}
    url, cid, secret = (env[k] or base.get(k) or "" for k in _FIELDS)
    return Profile(name or "environment", url, cid, secret)


_FIELDS = ("url", "client_id", "client_secret")
