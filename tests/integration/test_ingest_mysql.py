"""The SQL source on a real MariaDB (MySQL's wire protocol and dialect, through PyMySQL): a
throwaway server, typed columns inferred, an ever-growing key and an ``updated_at`` watermark
sync only what is new or changed."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ingest import infer
from ingest.checkpoint import decode_watermark, encode_watermark
from ingest.convert import Encoder
from ingest.sources import SqlSource

pytestmark = pytest.mark.slow
T0 = datetime(2026, 1, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mysql_url() -> Iterator[str]:
    server, install = (
        shutil.which("mariadbd", path="/usr/sbin:/usr/bin"),
        shutil.which("mariadb-install-db"),
    )
    if server is None or install is None:
        pytest.skip("MariaDB server not installed (Makefile DEBS: mariadb-server)")
    root = Path(tempfile.mkdtemp(prefix="ingest-mysql-"))
    data, port, sock = root / "data", _free_port(), root / "mysqld.sock"
    user = "mysql" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:  # mariadbd refuses to run as root: its own user owns the files
        entry = pwd.getpwnam("mysql")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", f"--user={user}", "--skip-test-db",
         "--auth-root-authentication-method=normal"],
        check=True, capture_output=True,
    )  # fmt: skip
    proc = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={data}", f"--user={user}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={sock}", "--skip-grant-tables",
         f"--pid-file={root / 'pid'}", f"--log-error={root / 'log'}",
         "--innodb-buffer-pool-size=32M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"mysql+pymysql://root@127.0.0.1:{port}/legacy?charset=utf8mb4"
    try:
        deadline = time.monotonic() + 120  # a bound for a loaded machine, not a timing assert
        while True:
            try:
                with create_engine(f"mysql+pymysql://root@127.0.0.1:{port}/").begin() as c:
                    c.execute(text("CREATE DATABASE legacy CHARACTER SET utf8mb4"))
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (root / "log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"MariaDB did not start: {log}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_key_and_watermark_sync_on_mysql(mysql_url: str) -> None:
    engine = create_engine(mysql_url)
    with engine.begin() as c:
        c.execute(
            text(
                "CREATE TABLE legacy_people (id int PRIMARY KEY, name varchar(40), "
                "allowance decimal(10,2), born date, updated_at datetime(3) NOT NULL) "
                "CHARACTER SET utf8mb4"
            )
        )
        for i in range(1, 11):
            c.execute(
                text("INSERT INTO legacy_people VALUES (:i, :n, :a, :b, :u)"),
                {"i": i, "n": f"测试{i}", "a": Decimal(f"{i}.25"), "b": date(1990, 1, i),
                 "u": T0 + timedelta(hours=i // 2)},
            )  # fmt: skip
    src = SqlSource(mysql_url, table="legacy_people", order_column="updated_at")
    rows = [r.values for r in src.rows() if r.values]
    assert [r[0] for r in rows] == list(range(1, 11))
    assert rows[0][1] == "测试1"  # utf8mb4 round trip
    m = infer.propose("civil.people", src.columns, rows, "id")
    types = {f.name: f.type for f in m.fields}
    assert types == {
        "id": "long",
        "name": "string",
        "allowance": "decimal",
        "born": "date",
        "updated_at": "local-timestamp-millis",  # DATETIME carries no zone
    }
    Encoder(m, src.columns, 1).encode(rows[0])

    mark = decode_watermark(encode_watermark(rows[4][4]))  # id 5 at T0 + 2h
    assert [r.values[0] for r in src.rows(watermark=mark) if r.values] == [6, 7, 8, 9, 10]
    with engine.begin() as c:
        c.execute(text("UPDATE legacy_people SET updated_at = :u WHERE id = 2"),
                  {"u": datetime.now(UTC).replace(tzinfo=None)})  # fmt: skip
    assert [r.values[0] for r in src.rows(watermark=mark) if r.values][-1] == 2

    by_key = SqlSource(mysql_url, query="SELECT id, name FROM legacy_people", order_column="id")
    assert [r.values[0] for r in by_key.rows(watermark=7) if r.values] == [8, 9, 10]
    engine.dispose()
