"""This site's identity, the sites it knows, and the topics shared between them.

Everything lives in ``<home>/federation/`` (0700; every file 0600):

- ``identity.json`` + ``identity.key``: our site name and Ed25519 key pair (the private key
  never leaves the file; ``exchange federation identity`` prints the public half as
  ``ed25519:<base64>``);
- ``sites.json``: the sites we know, by name, gateway URL and public key;
- ``shares.json``: topics we share *to* a site (``outgoing``) and accept *from* one
  (``incoming``, with the owner broker's address);
- ``mirror-users.json``: per remote site, the SCRAM user MirrorMaker uses at *our* broker;
- ``incoming-credentials.json``: per owner site, the credentials its admin handed us;
- ``witnessed.json``: per site, the last checkpoint of its log we cosigned (as its witness);
- ``witnesses.json`` + ``cosigned/``: our checkpoints other sites cosigned, and per witness
  when it last did (the scheduled witnessing's state, shown by ``federation status``).

A grant file carries an owner's mirror credentials to the remote admin (out of band, like any
other secret hand-over between two administrations).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.errors import ConfigurationError, Conflict, InvalidInput, NotFound
from exchange.kafka.security import write_private

SITE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
TOPIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,248}$")
KEY_PREFIX = "ed25519:"
GRANT_FORMAT = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_site_name(name: str) -> str:
    if not SITE_NAME.match(name):
        raise InvalidInput(
            f"site name {name!r}: lower-case letters, digits and '-', starting with a letter"
        )
    return name


def check_topic(topic: str) -> str:
    if not TOPIC_NAME.match(topic):
        raise InvalidInput(f"{topic!r} is not a topic name")
    return topic


def state_topic(owner: str, to: str) -> str:
    """The compacted topic where ``owner`` writes the catalog entries and agreement state of
    the topics it shares to ``to`` (MirrorMaker copies it with them; read-only at ``to``)."""
    return f"_exchange.federation.{check_site_name(owner)}.{check_site_name(to)}"


def encode_public_key(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def decode_public_key(text: str) -> Ed25519PublicKey:
    if not text.startswith(KEY_PREFIX):
        raise InvalidInput(f"a site public key starts with {KEY_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise InvalidInput("the site public key is not 32 bytes of base64") from None


@dataclass(frozen=True)
class Site:
    name: str
    url: str
    public_key: str  # ed25519:<base64>
    audit_key: str | None = None  # its audit checkpoint verifier key (to witness them)


@dataclass(frozen=True)
class Share:
    topic: str
    site: str  # the remote site (outgoing) or the owner site (incoming)
    at: str
    bootstrap: str | None = None  # incoming: the owner broker's address


@dataclass
class Federation:
    """The federation state of one home (files read on each call: CLI and gateway share them)."""

    home: Path
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.home / "federation"

    def _read(self, name: str, default: Any) -> Any:
        try:
            return json.loads((self.dir / name).read_text())
        except FileNotFoundError:
            return default
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"unreadable {self.dir / name}: {exc}") from None

    def _write(self, name: str, value: Any) -> None:
        write_private(self.dir / name, json.dumps(value, indent=2, sort_keys=True))

    # -- identity ------------------------------------------------------------------------
    def init(self, name: str) -> str:
        """Create this site's identity (idempotent for the same name); its public key."""
        check_site_name(name)
        current = self._read("identity.json", None)
        if current is not None:
            if current["name"] != name:
                raise Conflict(f"this home is already site {current['name']!r}")
            return self.public_key()
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(self.dir / "identity.key", pem.decode())
        self._write(
            "identity.json", {"name": name, "public_key": encode_public_key(key.public_key())}
        )
        return self.public_key()

    def name(self) -> str:
        ident = self._read("identity.json", None)
        if ident is None:
            raise ConfigurationError(
                "this home has no site identity: run `exchange federation init NAME`"
            )
        return str(ident["name"])

    def public_key(self) -> str:
        self.name()
        return str(self._read("identity.json", {})["public_key"])

    def private_key(self) -> Ed25519PrivateKey:
        self.name()
        key = serialization.load_pem_private_key(
            (self.dir / "identity.key").read_bytes(), password=None
        )
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError("the site identity key is not Ed25519")
        return key

    # -- sites ---------------------------------------------------------------------------
    def sites(self) -> list[Site]:
        return [Site(**s) for s in self._read("sites.json", [])]

    def site(self, name: str) -> Site:
        for s in self.sites():
            if s.name == name:
                return s
        raise NotFound(f"unknown site {name!r}: add it with `exchange federation sites add`")

    def add_site(self, name: str, url: str, public_key: str, audit_key: str | None = None) -> Site:
        check_site_name(name)
        decode_public_key(public_key)
        if not url.startswith(("http://", "https://")):
            raise InvalidInput("the site URL must be http:// or https://")
        if name == self.name():
            raise InvalidInput(f"{name!r} is this site")
        site = Site(name, url.rstrip("/"), public_key, audit_key)
        others = [s for s in self.sites() if s.name != name]
        self._write("sites.json", [asdict(s) for s in [*others, site]])
        return site

    # -- shares --------------------------------------------------------------------------
    def _shares(self) -> dict[str, list[dict[str, Any]]]:
        # Asked on every delivery (is this topic mirrored?): re-read only when the file changed.
        try:
            stamp = (self.dir / "shares.json").stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        hit = self._cache.get("shares")
        if hit is not None and stamp is not None and hit[0] == stamp:
            return copy.deepcopy(hit[1])
        raw: dict[str, list[dict[str, Any]]] = self._read(
            "shares.json", {"outgoing": [], "incoming": []}
        )
        self._cache["shares"] = (stamp, copy.deepcopy(raw))
        return raw

    def outgoing(self) -> list[Share]:
        return [Share(**s) for s in self._shares()["outgoing"]]

    def incoming(self) -> list[Share]:
        return [Share(**s) for s in self._shares()["incoming"]]

    def shares_file(self) -> Path:
        return self.dir / "shares.json"

    def mirror_user(self, site: str) -> tuple[str, str]:
        """The SCRAM user (name, password) MirrorMaker of ``site`` uses at our broker."""
        users: dict[str, dict[str, str]] = self._read("mirror-users.json", {})
        if site not in users:
            # Hex keeps the password safe inside a JAAS string and a properties file.
            users[site] = {"username": f"mirror-{site}", "password": secrets.token_hex(24)}
            self._write("mirror-users.json", users)
        u = users[site]
        return u["username"], u["password"]

    def share(self, topic: str, site: str) -> Share:
        """Record that ``topic`` (ours) is shared to ``site``."""
        check_topic(topic)
        self.site(site)
        raw = self._shares()
        if any(s["topic"] == topic and s["site"] == site for s in raw["outgoing"]):
            raise Conflict(f"{topic} is already shared to {site}")
        sh = Share(topic, site, _now())
        raw["outgoing"].append(asdict(sh))
        self._write("shares.json", raw)
        return sh

    def unshare(self, topic: str, site: str) -> None:
        raw = self._shares()
        kept = [s for s in raw["outgoing"] if not (s["topic"] == topic and s["site"] == site)]
        if len(kept) == len(raw["outgoing"]):
            raise NotFound(f"{topic} is not shared to {site}")
        raw["outgoing"] = kept
        self._write("shares.json", raw)

    def topics_shared_to(self, site: str) -> list[str]:
        return sorted(s.topic for s in self.outgoing() if s.site == site)

    def mirrored_topics_to(self, site: str) -> list[str]:
        """What ``site``'s MirrorMaker may read here: the shared topics and their state topic."""
        return [*self.topics_shared_to(site), state_topic(self.name(), site)]

    def owner_sites(self) -> list[str]:
        """The sites we accepted topics from."""
        return sorted({s.site for s in self.incoming()})

    def grant(self, site: str, bootstrap: str) -> dict[str, Any]:
        """What the remote admin needs to mirror our topics shared to ``site`` (secret)."""
        user, password = self.mirror_user(site)
        return {
            "v": GRANT_FORMAT,
            "owner": self.name(),
            "to": site,
            "bootstrap": bootstrap,
            "username": user,
            "password": password,
            "topics": self.topics_shared_to(site),
            "state_topic": state_topic(self.name(), site),
        }

    def accept(self, topic: str, grant: dict[str, Any]) -> Share:
        """Record ``topic`` mirrored from the grant's owner, keeping its credentials (0600)."""
        check_topic(topic)
        try:
            owner, to, bootstrap = str(grant["owner"]), str(grant["to"]), str(grant["bootstrap"])
            creds = {"username": str(grant["username"]), "password": str(grant["password"])}
            topics = [str(t) for t in grant["topics"]]
        except (KeyError, TypeError):
            raise InvalidInput("the grant file is not an exchange federation grant") from None
        if to != self.name():
            raise InvalidInput(f"the grant is for site {to!r}, this is {self.name()!r}")
        self.site(owner)
        if topic not in topics:
            raise InvalidInput(f"{owner} has not shared {topic} with us (grant: {topics})")
        stored: dict[str, dict[str, str]] = self._read("incoming-credentials.json", {})
        stored[owner] = creds | {"bootstrap": bootstrap}
        self._write("incoming-credentials.json", stored)
        raw = self._shares()
        raw["incoming"] = [
            s for s in raw["incoming"] if not (s["topic"] == topic and s["site"] == owner)
        ]
        sh = Share(topic, owner, _now(), bootstrap)
        raw["incoming"].append(asdict(sh))
        self._write("shares.json", raw)
        return sh

    def incoming_credentials(self, owner: str) -> dict[str, str]:
        stored: dict[str, dict[str, str]] = self._read("incoming-credentials.json", {})
        if owner not in stored:
            raise NotFound(f"no mirror credentials from {owner}")
        return stored[owner]

    # -- links: which owner-side client acts for one of our departments -------------------
    def link(self, department: str, site: str, client_id: str) -> None:
        """Our ``department`` reads ``site``'s topics as that site's client ``client_id``."""
        self.site(site)
        links: dict[str, dict[str, str]] = self._read("links.json", {})
        links.setdefault(department, {})[site] = client_id
        self._write("links.json", links)

    def linked_client(self, department: str, site: str) -> str | None:
        links: dict[str, dict[str, str]] = self._read("links.json", {})
        return links.get(department, {}).get(site)

    def owner_of(self, topic: str) -> str | None:
        """The owner site of an incoming (mirrored) topic, or None."""
        return next((s.site for s in self.incoming() if s.topic == topic), None)

    def shared_out(self, topic: str) -> bool:
        return any(s.topic == topic for s in self.outgoing())

    # -- witnessing (the checks live in audit.witnessing) ----------------------------------
    def witnessed(self) -> dict[str, dict[str, Any]]:
        """Per site: the last checkpoint of its log we cosigned (size, base64 root)."""
        out: dict[str, dict[str, Any]] = self._read("witnessed.json", {})
        return out

    def record_witnessed(self, site: str, size: int, root_b64: str) -> None:
        seen = self.witnessed()
        seen[site] = {"size": size, "root": root_b64, "at": _now()}
        self._write("witnessed.json", seen)

    def store_cosigned(self, size: int, note: str) -> Path:
        path = self.dir / "cosigned" / f"{size:012d}.note"
        write_private(path, note)
        return path

    def cosigned_note(self, size: int) -> str | None:
        try:
            return (self.dir / "cosigned" / f"{size:012d}.note").read_text()
        except FileNotFoundError:
            return None

    def witnesses(self) -> dict[str, dict[str, Any]]:
        """Per witness site: when it last cosigned our log (size, root, at), the last
        attempt and its error, consecutive failures (the scheduled witnessing's state)."""
        out: dict[str, dict[str, Any]] = self._read("witnesses.json", {})
        return out

    def update_witness(self, site: str, **values: Any) -> dict[str, Any]:
        seen = self.witnesses()
        entry = seen.setdefault(site, {}) | values
        seen[site] = entry
        self._write("witnesses.json", seen)
        return entry

    def cosigned_notes(self) -> list[tuple[Path, str]]:
        folder = self.dir / "cosigned"
        if not folder.is_dir():
            return []
        return [(p, p.read_text()) for p in sorted(folder.glob("*.note"))]
