"""Clocks: the wall clock for real runs; a simulated one shared by market, broker and protocol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """Time that moves only when told, forward only. Market, paper broker and use cases share one,
    so a simulated week takes as long as its computation, not seven days."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware datetime")
        self._at = at

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        self._at += delta
        return self._at

    def advance_to(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("advance_to needs a timezone-aware datetime")
        if at < self._at:
            raise ValueError(f"time only moves forward: {at.isoformat()} is before {self._at.isoformat()}")
        self._at = at
        return self._at
