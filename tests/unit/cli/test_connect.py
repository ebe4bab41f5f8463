"""The shared CLI layer without a gateway: profiles, option resolution, error rendering."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.connect import EXIT_UNREACHABLE, EXIT_USAGE, Session, describe
from cli.main import app
from exchange import __version__
from exchange.client import ApiError, AuthenticationFailed
from exchange.kafka.broker import free_port
from exchange.profiles import Profile, ProfileStore, profile_from_env

runner = CliRunner()


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test its own profiles file and no EXCHANGE_* from the caller's shell."""
    for k in list(os.environ):
        if k.startswith("EXCHANGE_"):
            monkeypatch.delenv(k)
    path = tmp_path / "cfg" / "profiles.toml"
    monkeypatch.setenv("EXCHANGE_CONFIG", str(path))
    monkeypatch.chdir(tmp_path)
    yield path


def run(*args: str, **env: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env=env or None)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def test_version() -> None:
    assert run("--version") == (0, f"exchange {__version__}\n", "")


def test_login_stores_a_private_file_and_profiles_list_hides_the_secret(config: Path) -> None:
    code, out, err = run(
        "login", "--profile", "health-pub", "--url", "http://127.0.0.1:1/", "--client-id",
        "health-1", "--client-secret", "s3cr\"et\\ü", "--no-check",
    )  # fmt: skip
    assert code == 0, err
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    p = ProfileStore.load(config).get("health-pub")
    assert (p.url, p.client_id, p.client_secret) == ("http://127.0.0.1:1", "health-1", 's3cr"et\\ü')
    assert ProfileStore.load(config).default == "health-pub"  # the first one becomes default
    code, out, _ = run("profiles", "list", "--output", "json")
    assert json.loads(out) == [
        {"profile": "health-pub", "url": "http://127.0.0.1:1", "client_id": "health-1",
         "default": True}
    ]  # fmt: skip
    assert "s3cr" not in out and "s3cr" not in repr(p)
    assert run("logout", "--profile", "health-pub")[0] == 0
    assert ProfileStore.load(config).profiles == {}


def test_login_rejects_a_bad_profile_name() -> None:
    code, _, err = run("login", "-p", "no spaces", "--url", "http://x", "--client-id", "a",
                       "--client-secret", "b", "--no-check")  # fmt: skip
    assert code == EXIT_USAGE and "profile name 'no spaces'" in err


def test_unknown_profile_lists_the_known_ones(config: Path) -> None:
    store = ProfileStore.load(config)
    store.put(Profile("alpha", "http://127.0.0.1:1", "a", "s"))
    store.save()
    code, _, err = run("departments", "list", "--profile", "beta")
    assert code == EXIT_USAGE
    assert "no profile 'beta'" in err and "known: alpha" in err and "exchange login" in err
    code, _, err = run("departments", "list", EXCHANGE_PROFILE="gamma")
    assert code == EXIT_USAGE and "no profile 'gamma'" in err


def test_not_logged_in_says_how() -> None:
    code, _, err = run("departments", "list")
    assert code == EXIT_USAGE and "not logged in" in err and "exchange login" in err


def test_half_credentials_are_refused() -> None:
    code, _, err = run("departments", "list", "--client-id", "x", "--url", "http://h")
    assert code == EXIT_USAGE and "go together" in err


def test_bad_url_and_unreachable_gateway() -> None:
    creds = ["--client-id", "x", "--client-secret", "y"]
    code, _, err = run("departments", "list", "--url", "ftp//nowhere", *creds)
    assert code == EXIT_USAGE and "bad gateway URL" in err
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run("departments", "list", "--url", url, *creds)
    assert code == EXIT_UNREACHABLE
    assert f"cannot reach the gateway at {url}" in err and "exchange up" in err
    code, _, err = run("departments", "list", "--url", url, *creds, "--output", "json")
    body = json.loads(err)
    assert body["exit_code"] == EXIT_UNREACHABLE and "cannot reach" in body["error"]


def test_environment_overrides_the_profile(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ProfileStore.load(config)
    store.put(Profile("p", "http://a:1", "id-a", "sec-a"))
    store.save()
    monkeypatch.setenv("EXCHANGE_URL", "http://b:2")
    p = profile_from_env("p")
    assert (p.url, p.client_id, p.client_secret) == ("http://b:2", "id-a", "sec-a")
    monkeypatch.setenv("EXCHANGE_CLIENT_ID", "id-c")
    monkeypatch.setenv("EXCHANGE_CLIENT_SECRET", "sec-c")
    p = profile_from_env()  # all three from the environment: no profile needed
    assert (p.url, p.client_id, p.client_secret) == ("http://b:2", "id-c", "sec-c")
    t = Session(profile="p", url="http://flag:3").target()
    assert (t.url, t.client_id, t.source) == ("http://flag:3", "id-a", "profile 'p'")


def test_error_stories() -> None:
    wrong = describe(AuthenticationFailed(401, {"error": "invalid_client"}, "health-1"))
    assert wrong is not None and "refused the credentials of client 'health-1'" in wrong.message
    assert "wrong client id or secret" in wrong.message and "None" not in wrong.message
    body = {
        "code": "invalid_request",
        "detail": "request body or parameters are invalid",
        "errors": [{"path": "body.level", "reason": "Input should be 'region' or 'city'"}],
    }
    invalid = describe(ApiError(422, body))
    assert invalid is not None and invalid.details == (
        "body.level: Input should be 'region' or 'city'",
    )
    registry = describe(ApiError(404, {"error_code": 40401, "message": "Subject not found"}))
    assert registry is not None and registry.message == "Subject not found (HTTP 404, 40401)"
    plain = describe(ApiError(502, None))
    assert plain is not None and plain.message == "bad gateway (HTTP 502)"
    assert describe(RuntimeError("a bug")) is None  # bugs are not dressed up


def test_audit_verify_outside_a_home_names_the_home_it_looked_in(tmp_path: Path) -> None:
    code, _, err = run("audit", "verify")  # cwd: an empty directory, no profile
    assert code == EXIT_USAGE and "Traceback" not in err
    assert f"no auditor-credentials.json in {tmp_path.resolve() / '.exchange'}" in err
    code, _, err = run("audit", "verify", "--home", str(tmp_path / "elsewhere"))
    assert code == EXIT_USAGE and str(tmp_path / "elsewhere" / "auditor-credentials.json") in err
