"""kafka-python's commit/abort wait without a bound; the adapter's never do."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.producer.transaction_manager import TransactionalRequestResult

from exchange.kafka.client import end_transaction


class StuckProducer:
    """A producer whose transaction result never arrives (the broker died mid-request)."""

    def __init__(self) -> None:
        self.woken = 0
        stuck = TransactionalRequestResult()

        class Manager:
            def begin_commit(self) -> Any:
                return stuck

            def begin_abort(self) -> Any:
                return stuck

        self._transaction_manager = Manager()
        self._sender = self

    def wakeup(self) -> None:
        self.woken += 1


@pytest.mark.parametrize("commit", [True, False])
def test_a_transaction_result_that_never_comes_times_out(commit: bool) -> None:
    producer = StuckProducer()
    t0 = time.monotonic()
    with pytest.raises(KafkaTimeoutError):
        end_transaction(producer, commit=commit, timeout_ms=300)  # type: ignore[arg-type]
    assert 0.25 < time.monotonic() - t0 < 2.0 and producer.woken == 1


def test_a_finished_transaction_returns() -> None:
    producer = StuckProducer()
    producer._transaction_manager.begin_abort().done()
    end_transaction(producer, commit=False, timeout_ms=300)  # type: ignore[arg-type]
