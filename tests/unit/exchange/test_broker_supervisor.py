"""The broker supervisor's decisions against a stand-in broker (the real one is killed and
restarted in tests/e2e/test_fault_broker_supervised.py): restart after a crash with a
doubling back-off, respect an operator's stop, give up after rapid failures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchange.errors import KafkaUnavailable
from exchange.kafka.supervisor import FAILED, STOPPED, UP, BrokerSupervisor


class FakeBroker:
    def __init__(self, restart_failures: int = 0) -> None:
        self.running = True
        self.state_file_left = False  # a crash leaves it behind; a stop removes it
        self.restart_failures = restart_failures
        self.restart_calls: list[float] = []
        self.log_file = Path("/nowhere/server.log")

    def crash(self) -> None:
        self.running, self.state_file_left = False, True

    def crashed(self) -> tuple[int, str] | None:
        return (42, "killed by SIGKILL") if self.state_file_left and not self.running else None

    def state(self) -> object | None:
        return object() if self.running else None

    def restart(self) -> Any:
        self.restart_calls.append(time.monotonic())
        if self.restart_failures > 0:
            self.restart_failures -= 1
            raise KafkaUnavailable("Kafka did not become ready")
        self.running = True

        class St:
            pid, bootstrap = 43, "127.0.0.1:1"

        return St()


def supervise(broker: FakeBroker, **kw: Any) -> BrokerSupervisor:
    sup = BrokerSupervisor(broker, check_s=0.01, backoff_s=0.02, **kw)  # type: ignore[arg-type]
    sup.start()
    return sup


def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.005)


def test_a_crashed_broker_is_restarted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    b = FakeBroker()
    sup = supervise(b)
    try:
        b.crash()
        until(lambda: sup.restarts == 1)
        assert sup.status() == UP and b.running
        assert "killed by SIGKILL" in caplog.text and "Kafka broker restarted" in caplog.text
    finally:
        sup.stop()


def test_failed_restarts_back_off_doubling_then_succeed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    b = FakeBroker(restart_failures=2)
    sup = supervise(b, give_up_after=10)
    try:
        b.crash()
        until(lambda: sup.restarts == 1)
        assert len(b.restart_calls) == 3
        delays = [r.args[1] for r in caplog.records if "restarting it in" in r.msg]  # type: ignore[index]
        assert delays == [0.02, 0.04, 0.08]
    finally:
        sup.stop()


def test_gives_up_after_rapid_failures_with_a_clear_reason() -> None:
    b = FakeBroker(restart_failures=100)
    sup = supervise(b, give_up_after=3)
    try:
        b.crash()
        until(lambda: sup.status() == FAILED)
        assert len(b.restart_calls) == 2  # crash + 2 failed restarts = 3 failures
        assert sup.reason is not None and "gave up after 3 failures" in sup.reason
        assert "exchange kafka start" in sup.reason
        time.sleep(0.1)
        assert len(b.restart_calls) == 2  # and it stays given up
    finally:
        sup.stop()


def test_an_operators_stop_is_not_undone() -> None:
    b = FakeBroker()
    sup = supervise(b)
    try:
        b.running = False  # `exchange kafka stop`: no state file left
        until(lambda: sup.status() == STOPPED)
        time.sleep(0.1)
        assert b.restart_calls == []
        b.running = True  # `exchange kafka start`
        until(lambda: sup.status() == UP)
    finally:
        sup.stop()
