"""Two processes registering concurrently over one PostgreSQL database (throwaway cluster).

Starts its own cluster with initdb/pg_ctl on a free port in a temporary directory; skipped when
the PostgreSQL server binaries are not installed (Debian package ``postgresql``).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.auditing import MemoryAuditSink
from exchange.db import make_engine, migrate, session_factory
from exchange.kafka.broker import free_port
from schemas.registry import SchemaRegistry
from tests.integration.test_registry_store import WORKER

pytestmark = pytest.mark.slow


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed")
    root = Path(tempfile.mkdtemp(prefix="registry-pg-"))
    # initdb refuses to run as root: run the cluster as the postgres user then.
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "registry", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "60",
         "-l", str(root / "log"), "start"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://registry@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_two_processes_over_postgres(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    migrate(engine)
    reg = SchemaRegistry(session_factory(engine), MemoryAuditSink())
    reg.set_config(None, "NONE")
    go, n = tmp_path / "go", 15
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, pg_url, str(p), str(go), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in (0, 1)
    ]
    time.sleep(0.5)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    own = results[0]["own"] + results[1]["own"]
    assert len(set(own)) == 2 * n
    assert results[0]["shared"] == results[1]["shared"]
    assert results[0]["dup"] == results[1]["dup"]  # raced on the unique fingerprint
    assert reg.versions("shared") == list(range(1, n + 1))
    assert len({reg.version("shared", v).id for v in range(1, n + 1)}) == n
    engine.dispose()


def test_imported_ids_move_the_sequence(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate(engine)
    reg = SchemaRegistry(session_factory(engine), MemoryAuditSink())

    def rec(name: str) -> str:
        return json.dumps(
            {"type": "record", "name": name, "fields": [{"name": "x", "type": "int"}]}
        )

    reg.set_mode("imported", "IMPORT", force=True)
    assert reg.register("imported", rec("Imported"), schema_id=10_000, version=3) == 10_000
    assert reg.register("after-import", rec("AfterImport")) > 10_000
    engine.dispose()
