"""Timestamps are stored in UTC and read back timezone-aware, also on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Integer, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from exchange.db import UtcDateTime


class _Base(DeclarativeBase):
    pass


class Stamp(_Base):
    __tablename__ = "stamp"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


def test_round_trip_is_aware_utc_and_the_same_instant(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    _Base.metadata.create_all(engine)
    shanghai = datetime(2026, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    naive_utc = datetime(2026, 1, 1, 0, 0)
    with Session(engine) as s:
        s.add_all([Stamp(id=1, at=shanghai), Stamp(id=2, at=naive_utc), Stamp(id=3, at=None)])
        s.commit()
    with Session(engine) as s:
        rows = {r.id: r.at for r in s.scalars(select(Stamp))}
        # comparisons in SQL see the same instant whatever zone the parameter is in
        later = s.scalars(select(Stamp.id).where(Stamp.at < shanghai + timedelta(seconds=1)))
        assert sorted(later) == [1, 2]
    assert rows[1] == rows[2] == datetime(2026, 1, 1, tzinfo=UTC)
    assert rows[1] is not None and rows[1].utcoffset() == timedelta(0)
    assert rows[1].isoformat() == "2026-01-01T00:00:00+00:00"
    assert rows[3] is None
    engine.dispose()


def test_every_model_timestamp_uses_the_aware_type() -> None:
    from sqlalchemy import DateTime

    import gateway.bootstrap  # noqa: F401  # imports every package's models
    from exchange.db import Base

    plain = [
        f"{t.name}.{c.name}"
        for t in Base.metadata.tables.values()
        for c in t.columns
        if isinstance(c.type, DateTime)
    ]
    assert plain == [], "use exchange.db.UtcDateTime for timestamps"


def test_an_instant_beyond_utc_range_is_invalid_input_not_an_outage(tmp_path: Path) -> None:
    import pytest
    from sqlalchemy.orm import sessionmaker

    from exchange.db import transaction
    from exchange.errors import InvalidInput

    engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    _Base.metadata.create_all(engine)
    sessions = sessionmaker(engine)
    for text in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        with pytest.raises(InvalidInput), transaction(sessions) as s:
            s.add(Stamp(id=1, at=datetime.fromisoformat(text)))
    with transaction(sessions) as s:
        assert s.scalars(select(Stamp)).all() == []
    engine.dispose()
