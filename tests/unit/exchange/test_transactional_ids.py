"""Stable transactional ids per gateway slot: the same after a restart, never shared by two
gateways that can run at once, and a second claim of a slot on one home is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.kafka.rdkafka import RdKafkaAdapter
from exchange.kafka.transactional import SlotTaken, claim_slot, slot_prefix, transactional_id
from exchange.settings import Settings


def prefix(**kw: object) -> str:
    args: dict[str, object] = {
        "home": Path("/srv/exchange"),
        "listen_host": "0.0.0.0",  # noqa: S104 - a value compared, nothing is bound
        "port": 8080,
        "host_name": "gw-a",
    } | kw
    return slot_prefix(None, **args)  # type: ignore[arg-type]


def test_a_slot_keeps_its_prefix_across_restarts() -> None:
    assert prefix() == prefix()
    a = Settings(home=Path("/srv/x"), port=8081)
    b = Settings(home=Path("/srv/x"), port=8081)
    assert a.transactional_prefix() == b.transactional_prefix()


@pytest.mark.parametrize(
    "other",
    [
        {"port": 8081},
        {"home": Path("/srv/exchange-2")},
        {"host_name": "gw-b"},
        {"listen_host": "10.0.0.5"},
    ],
)
def test_gateways_that_can_run_together_never_share_ids(other: dict[str, object]) -> None:
    mine = {transactional_id(prefix(), n) for n in range(8)}
    theirs = {transactional_id(prefix(**other), n) for n in range(8)}
    assert not mine & theirs


def test_explicit_instance_id_wins_and_is_made_safe() -> None:
    p = slot_prefix("pod-0/weird id", home=Path("/h"), listen_host="h", port=1, host_name="x")
    assert p == "exchange-pod-0_weird_id"
    assert p == slot_prefix("pod-0/weird id", home=Path("/o"), listen_host="o", port=2)
    assert transactional_id(p, 3) == "exchange-pod-0_weird_id-tx3"


def test_a_slot_is_claimed_once_per_home_and_freed_with_its_holder(tmp_path: Path) -> None:
    held = claim_slot(tmp_path, "exchange-x")
    with pytest.raises(SlotTaken, match="EXCHANGE_INSTANCE_ID"):
        claim_slot(tmp_path, "exchange-x")
    other = claim_slot(tmp_path, "exchange-y")  # another slot on the same home: fine
    held.close()  # the holder exits (a SIGKILL closes it as well)
    claim_slot(tmp_path, "exchange-x").close()
    other.close()


def test_adapter_reuses_its_slot_ids_when_it_replaces_producers() -> None:
    """A replaced producer takes its slot's id again (so it fences the one it replaces);
    the pool never holds more ids than slots."""
    a = RdKafkaAdapter("127.0.0.1:1", transactional_producers=2, transactional_prefix="exchange-p")
    made: list[int] = []

    class Dummy:
        def purge(self) -> None: ...

        def flush(self, timeout: float = 0) -> int:
            return 0

    def new(slot: int) -> Dummy:
        made.append(slot)
        return Dummy()

    a._new_transactional = new  # type: ignore[assignment,method-assign]
    assert a.fence_transactions() == 0
    assert sorted(made) == [0, 1]
    slot, _ = a._take()
    a._free(slot)  # dropped as broken: the slot's next producer takes the same id
    assert a.fence_transactions() == 0
    assert sorted(made) == sorted([0, 1, slot])
    assert a._tx_prefix == "exchange-p"
    assert transactional_id(a._tx_prefix, slot) == f"exchange-p-tx{slot}"
