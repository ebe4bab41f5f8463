"""Run and supervise MirrorMaker 2 for this site's incoming shares.

``exchange federation start`` spawns ``exchange federation run`` in the background; that
process (the supervisor) writes ``federation/mirror/mm2.properties`` from the incoming shares,
starts the MirrorMaker JVM, restarts it with exponential backoff (1 s … 30 s) when it exits,
and rewrites the configuration and restarts it when the shares change. ``state.json`` (pid of
the supervisor and of the JVM, state, restarts, last exit) is what ``status`` and ``stop`` read.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import SecretStr

from exchange.federation.sites import Federation, state_topic
from exchange.kafka.broker import pid_alive
from exchange.kafka.jars import ensure_mirror_jars
from exchange.kafka.mirror import ClusterEnd, Flow, launch, write_mm2_config
from exchange.kafka.security import KafkaSecurity, write_private

MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class MirrorState:
    supervisor_pid: int
    mm2_pid: int | None
    state: str  # starting | running | restarting | idle | stopped
    restarts: int
    since: float
    last_exit: int | None = None


def flows(fed: Federation, here: ClusterEnd) -> list[Flow]:
    """One flow per owner site we accepted topics from."""
    by_owner: dict[str, list[str]] = {}
    for sh in fed.incoming():
        by_owner.setdefault(sh.site, []).append(sh.topic)
    out: list[Flow] = []
    for owner, topics in sorted(by_owner.items()):
        c = fed.incoming_credentials(owner)
        sec = KafkaSecurity(
            protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            username=c["username"],
            password=SecretStr(c["password"]),
        )
        # With the topics, the owner's state topic for us (catalog entries, agreement state).
        topics.append(state_topic(owner, here.alias))
        out.append(Flow(ClusterEnd(owner, c["bootstrap"], sec), here, tuple(sorted(topics))))
    return out


class Supervisor:
    def __init__(self, fed: Federation, here: ClusterEnd) -> None:
        self.fed = fed
        self.here = here
        self.dir = fed.dir / "mirror"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stop = False

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def _record(self, state: str, last_exit: int | None = None) -> None:
        st = MirrorState(
            os.getpid(),
            self.proc.pid if self.proc is not None else None,
            state,
            self.restarts,
            time.time(),
            last_exit,
        )
        write_private(self.state_file, json.dumps(asdict(st)))

    def _shares_stamp(self) -> float:
        try:
            return self.fed.shares_file().stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _start_jvm(self) -> bool:
        fl = flows(self.fed, self.here)
        if not fl:
            self._record("idle")
            return False
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_mm2_config(self.dir, fl)
        self.proc = launch(self.dir, ensure_mirror_jars(), self.here.alias)
        self._record("running")
        return True

    def _stop_jvm(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def run(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Until SIGTERM/SIGINT: keep MirrorMaker running on the current shares."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        stamp = self._shares_stamp()
        backoff = 1.0
        self._start_jvm()
        try:
            while not self._stop:
                sleep(0.5)
                if self._shares_stamp() != stamp:  # a share accepted or withdrawn
                    stamp = self._shares_stamp()
                    self._stop_jvm()
                    self._start_jvm()
                    continue
                if self.proc is None or self.proc.poll() is None:
                    continue
                code = self.proc.returncode
                self.restarts += 1
                self._record("restarting", code)
                deadline = time.monotonic() + backoff
                while not self._stop and time.monotonic() < deadline:
                    sleep(0.2)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                if not self._stop:
                    self._start_jvm()
        finally:
            self._stop_jvm()
            self._record("stopped")

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop = True


def read_state(fed: Federation) -> MirrorState | None:
    """The supervisor's state, or None if it is not running."""
    try:
        st = MirrorState(**json.loads((fed.dir / "mirror" / "state.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if st.state == "stopped" or not pid_alive(st.supervisor_pid):
        return None
    return st


def stop(fed: Federation, timeout: float = 40.0) -> bool:
    st = read_state(fed)
    if st is None:
        return False
    os.kill(st.supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(st.supervisor_pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(st.supervisor_pid, os.WNOHANG)
        time.sleep(0.1)
    if pid_alive(st.supervisor_pid):
        os.kill(st.supervisor_pid, signal.SIGKILL)
    if st.mm2_pid is not None and pid_alive(st.mm2_pid):
        os.kill(st.mm2_pid, signal.SIGKILL)
    return True
