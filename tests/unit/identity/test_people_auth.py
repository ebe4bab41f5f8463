"""Password hashing, TOTP, PKCE codes, console sessions and people, on a real SQLite database
with injected clocks (no browser, no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from exchange.db import make_engine, migrate, session_factory
from exchange.errors import InvalidInput
from exchange.identity import totp
from exchange.identity.authcodes import (
    AuthCodes,
    InvalidGrant,
    challenge_for,
    new_verifier,
    redirect_allowed,
    valid_challenge,
)
from exchange.identity.passwords import hash_password, verify_password, weaknesses
from exchange.identity.people import CredentialsRefused, NotYourPerson, People, WeakPassword
from exchange.identity.service import SYSTEM, IdentityService
from exchange.identity.sessions import ConsoleSessions


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(engine)
    s = session_factory(engine)
    IdentityService(s).create_department("health", "Health", "city")
    return s


def test_password_hash_verifies_only_the_password() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$15$8$1$")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert hash_password("correct horse battery") != stored  # salted
    assert not verify_password("x", "bcrypt$whatever")
    assert not verify_password("x", "scrypt$30$8$1$AAAA$AAAA")  # absurd cost refused
    assert not verify_password("x" * 2000, stored)


def test_totp_window_and_replay() -> None:
    secret, now = totp.new_secret(), 1_800_000_000.0
    step = int(now) // totp.STEP_S
    assert totp.accepted_step(secret, totp.code_at(secret, now), now, 0) == step
    assert totp.accepted_step(secret, totp.code_at(secret, now - 30), now, 0) == step - 1
    assert totp.accepted_step(secret, totp.code_at(secret, now - 90), now, 0) is None
    assert totp.accepted_step(secret, totp.code_at(secret, now), now, step) is None  # replay
    assert totp.accepted_step(secret, "12345", now, 0) is None
    assert totp.uri(secret, "ann").startswith("otpauth://totp/exchange%3Aann?secret=")


def test_pkce_s256_only() -> None:
    verifier = new_verifier()
    challenge = challenge_for(verifier)
    assert valid_challenge(challenge, "S256")
    assert not valid_challenge(challenge, "plain")
    assert not valid_challenge("short", "S256")
    assert redirect_allowed("console", "/console/callback")
    assert not redirect_allowed("console", "/elsewhere")
    assert not redirect_allowed("stranger", "/console/callback")


def test_code_redeems_once_with_its_verifier(sessions: sessionmaker[Session]) -> None:
    clock = Clock()
    codes = AuthCodes(sessions, clock=clock)
    verifier = new_verifier()
    args = {"client_id": "console", "redirect_uri": "http://gw/console/callback"}

    def issue() -> str:
        return codes.issue(challenge=challenge_for(verifier), login="ann", scope="steward", **args)

    code = issue()
    with pytest.raises(InvalidGrant):
        codes.redeem(code, verifier=new_verifier(), **args)
    with pytest.raises(InvalidGrant):  # a failed attempt used the code up
        codes.redeem(code, verifier=verifier, **args)
    code = issue()
    assert codes.redeem(code, verifier=verifier, **args).login == "ann"
    with pytest.raises(InvalidGrant):
        codes.redeem(code, verifier=verifier, **args)
    code = issue()
    with pytest.raises(InvalidGrant):
        codes.redeem(code, verifier=verifier, client_id="console", redirect_uri="http://x/")
    code = issue()
    clock.now += 61
    with pytest.raises(InvalidGrant):
        codes.redeem(code, verifier=verifier, **args)


def test_sessions_idle_absolute_and_everywhere(sessions: sessionmaker[Session]) -> None:
    clock = Clock()
    store = ConsoleSessions(sessions, idle_s=600, absolute_s=3600, clock=clock)

    def new() -> str:
        return store.create(
            login="ann",
            principal_id="person:ann",
            department="health",
            roles=frozenset({"steward"}),
            issuer="http://gw",
        )

    a, b = new(), new()
    info = store.lookup(a)
    assert info is not None and info.principal_id == "person:ann" and info.roles == {"steward"}
    assert store.lookup("not-a-session") is None
    for _ in range(6):  # used every 9 minutes: stays alive until the absolute limit
        clock.now += 540
        assert store.lookup(a) is not None
    clock.now += 540
    assert store.lookup(a) is None  # 7 x 9 min > 1 h
    assert store.lookup(b) is None  # idle far too long
    c, d = new(), new()
    store.end(c)
    assert store.lookup(c) is None and store.lookup(d) is not None
    assert store.end_all("ann") == 1
    assert store.lookup(d) is None


def test_people_separation_of_duties_and_second_factor(sessions: sessionmaker[Session]) -> None:
    clock = Clock()
    people = People(sessions, b"k" * 32, clock=clock)
    with pytest.raises(InvalidInput):
        people.create("health", "ann", "Ann", "short", ["steward"], by={"admin"})
    with pytest.raises(InvalidInput):
        people.create("health", "ann", "Ann", "long enough pass", ["auditor", "admin"], by=SYSTEM)
    with pytest.raises(NotYourPerson):  # admins do not mint auditors
        people.create("health", "eve", "Eve", "long enough pass", ["auditor"], by={"admin"})
    ann = people.create("health", "ann", "Ann", "long enough pass", ["admin"], by={"admin"})
    assert ann.needs_second_factor and not ann.totp_enrolled
    assert people.authenticate("ann", "long enough pass") == ann
    assert people.authenticate("ann", "wrong pass word") is None
    assert people.authenticate("nobody", "long enough pass") is None
    enrol = people.begin_enrolment("ann")
    secret = _secret(enrol.secret_text)
    assert not people.check_totp("ann", "000000")
    assert people.check_totp("ann", totp.code_at(secret, clock.now))
    assert not people.check_totp("ann", totp.code_at(secret, clock.now))  # once only
    assert people.get("ann").totp_enrolled
    assert not people.reset_totp("ann", by={"admin"}).totp_enrolled
    people.set_disabled("ann", True, by={"admin"})
    assert people.authenticate("ann", "long enough pass") is None


def test_password_policy_says_why() -> None:
    assert weaknesses("correct horse battery") == []
    assert weaknesses("short") == ["short"]
    assert weaknesses("aaaaaaaaaaaaaaaa") == ["repetitive"]
    assert weaknesses("ab" * 8 + "c") == ["repetitive"]  # 3 different characters
    assert weaknesses("my name is ann-lee ok", "ann-lee") == ["login"]
    assert weaknesses("x" * 2000)[0] == "long"


def test_person_changes_own_password(sessions: sessionmaker[Session]) -> None:
    clock = Clock()
    people = People(sessions, b"k" * 32, clock=clock)
    people.create("health", "bob", "Bob", "first long password", ["steward"], by=SYSTEM)
    with pytest.raises(CredentialsRefused) as refused:
        people.change_password("bob", "not the password", "second long password")
    assert refused.value.reason == "bad_password"
    with pytest.raises(WeakPassword) as weak:  # refused before the current one is checked
        people.change_password("bob", "not the password", "call me bob, please")
    assert weak.value.weaknesses == ["login"] and "login" in weak.value.message
    with pytest.raises(WeakPassword) as weak:
        people.change_password("bob", "first long password", "first long password")
    assert weak.value.weaknesses == ["same"]
    assert people.authenticate("bob", "first long password") is not None  # nothing changed
    people.change_password("bob", "first long password", "second long password")
    assert people.authenticate("bob", "first long password") is None
    assert people.authenticate("bob", "second long password") is not None
    assert people.get("bob") == people.authenticate("bob", "second long password")
    with pytest.raises(CredentialsRefused):  # unknown login: the same answer
        people.change_password("nobody", "first long password", "second long password")


def test_admin_password_change_needs_a_fresh_code(sessions: sessionmaker[Session]) -> None:
    clock = Clock()
    people = People(sessions, b"k" * 32, clock=clock)
    people.create("health", "ada", "Ada", "first long password", ["admin"], by=SYSTEM)
    secret = _secret(people.begin_enrolment("ada").secret_text)
    used = totp.code_at(secret, clock.now)
    assert people.check_totp("ada", used)  # the sign-in
    for code in (None, "000000", used):  # missing, wrong, replayed
        with pytest.raises(CredentialsRefused) as refused:
            people.change_password("ada", "first long password", "second long password", code)
        assert refused.value.reason == "bad_totp"
    fresh = totp.code_at(secret, clock.now + totp.STEP_S)
    people.change_password("ada", "first long password", "second long password", fresh)
    assert people.authenticate("ada", "second long password") is not None


def _secret(text: str) -> bytes:
    import base64

    return base64.b32decode(text + "=" * (-len(text) % 8))
