"""PKCS#11 KMS (python-pkcs11): KEKs are non-extractable AES-256 keys on an HSM token.

Each KEK version is a token object labelled ``exchange-kek:<alias>#v<n>``; wrapping is
AES-256-GCM inside the HSM with a random 12-byte nonce (``0x01 | nonce | ciphertext+tag``).
Any PKCS#11 failure — library missing, token absent, wrong PIN, HSM error — is reported as
:class:`KmsUnavailable` and the session is reopened on the next call.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
from typing import Any

from exchange.crypto.errors import KekNotFound, KmsUnavailable
from exchange.crypto.kms import WRAP_FORMAT, KekRef, wrap_aad

_LABEL = re.compile(r"^exchange-kek:(?P<alias>.+)#v(?P<version>\d+)$")


def _label(kek: KekRef) -> str:
    return f"exchange-kek:{kek.alias}#v{kek.version}"


class Pkcs11Kms:
    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self.module = module
        self.token_label = token_label
        self._pin = pin
        self._session: Any = None
        self._keys: dict[KekRef, Any] = {}
        self._lock = threading.RLock()

    def _open(self) -> Any:
        import pkcs11

        if self._session is None:
            try:
                token = pkcs11.lib(self.module).get_token(token_label=self.token_label)
                self._session = token.open(user_pin=self._pin, rw=True)
            except (pkcs11.PKCS11Error, OSError, RuntimeError) as exc:
                raise KmsUnavailable(f"PKCS#11 token {self.token_label!r} unavailable") from exc
        return self._session

    def _reset(self) -> None:
        session, self._session, self._keys = self._session, None, {}
        if session is not None:
            with contextlib.suppress(Exception):  # discarded anyway
                session.close()

    def _call(self, fn: Any) -> Any:
        """Run ``fn(session)`` under the lock; PKCS#11 errors → KmsUnavailable."""
        import pkcs11

        with self._lock:
            try:
                return fn(self._open())
            except (KekNotFound, KmsUnavailable):
                raise
            except (pkcs11.PKCS11Error, RuntimeError) as exc:
                self._reset()
                raise KmsUnavailable("PKCS#11 operation failed") from exc

    def _versions(self, session: Any, alias: str) -> list[int]:
        from pkcs11 import Attribute, ObjectClass

        found = []
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
            m = _LABEL.match(obj.label or "")
            if m and m["alias"] == alias:
                found.append(int(m["version"]))
        return sorted(found)

    def create_kek(self, alias: str) -> KekRef:
        from pkcs11 import Attribute, KeyType

        def make(session: Any) -> KekRef:
            versions = self._versions(session, alias)
            kek = KekRef(alias, (versions[-1] if versions else 0) + 1)
            session.generate_key(
                KeyType.AES,
                256,
                label=_label(kek),
                store=True,
                template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True},
            )
            return kek

        result: KekRef = self._call(make)
        return result

    def current_kek(self, alias: str) -> KekRef:
        versions: list[int] = self._call(lambda s: self._versions(s, alias))
        if not versions:
            raise KekNotFound(f"no KEK for {alias}")
        return KekRef(alias, versions[-1])

    def _key(self, session: Any, kek: KekRef) -> Any:
        from pkcs11 import KeyType, NoSuchKey

        if kek not in self._keys:
            try:
                self._keys[kek] = session.get_key(key_type=KeyType.AES, label=_label(kek))
            except NoSuchKey:
                raise KekNotFound(f"no KEK {kek}") from None
        return self._keys[kek]

    def wrap(self, kek: KekRef, dek: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        nonce = secrets.token_bytes(12)

        def run(session: Any) -> bytes:
            params = GCMParams(nonce, wrap_aad(kek))
            out: bytes = self._key(session, kek).encrypt(
                dek, mechanism=Mechanism.AES_GCM, mechanism_param=params
            )
            return out

        sealed: bytes = self._call(run)
        return WRAP_FORMAT + nonce + sealed

    def unwrap(self, kek: KekRef, wrapped: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        if wrapped[:1] != WRAP_FORMAT or len(wrapped) < 29:
            raise KmsUnavailable("wrapped key has an unknown format")

        def run(session: Any) -> bytes:
            params = GCMParams(wrapped[1:13], wrap_aad(kek))
            out: bytes = self._key(session, kek).decrypt(
                wrapped[13:], mechanism=Mechanism.AES_GCM, mechanism_param=params
            )
            return out

        result: bytes = self._call(run)
        return result

    def ping(self) -> bool:
        try:
            self._call(lambda s: None)
            return True
        except KmsUnavailable:
            return False

    def close(self) -> None:
        with self._lock:
            self._reset()
