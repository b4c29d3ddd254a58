"""The NYSE trading calendar (A3): sessions, opening hours and half days, from `exchange_calendars`.

`NyseCalendar` implements the `TradingCalendar` port. Every datetime in or out is timezone-aware
America/New_York; every day is a `datetime.date`. The underlying `exchange_calendars` schedule is built
once per (start, end) range and shared by every `NyseCalendar` of that range; after that all answers
are numpy look-ups (no pandas).

A date outside the calendar's range is a `MarketDataGap` (the calendar cannot know); a wrong argument
(naive datetime, start after end, month 13) is `ValidationFailed`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Final

import exchange_calendars as xcals
import numpy as np

from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.market import NEW_YORK, DateArray

__all__ = ["DEFAULT_START", "NEW_YORK", "NyseCalendar", "default_end"]

DEFAULT_START: Final = date(2000, 1, 1)
_LEAPS_YEARS_AHEAD = 4  # LEAPS reach ~3 years out; one more for margin.
_REGULAR_CLOSE_MINUTE = 16 * 60


def default_end(today: date | None = None) -> date:
    """31 December four years after `today`'s year: far enough for LEAPS expiries, stable within a year."""
    year = (today or date.today()).year + _LEAPS_YEARS_AHEAD
    return date(year, 12, 31)


@dataclass(frozen=True)
class _Schedule:
    sessions: DateArray  # datetime64[D], ascending
    opens: DateArray  # datetime64[m], America/New_York wall clock
    closes: DateArray  # datetime64[m], America/New_York wall clock


@cache
def _schedule(start: date, end: date) -> _Schedule:
    """Build the XNYS schedule once per range (slowish: pandas); everything after is numpy."""
    with warnings.catch_warnings():
        # exchange_calendars 4.13 still reads Series.values, which pandas 3.1 deprecates (harmless here).
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        cal = xcals.get_calendar("XNYS", start=start.isoformat(), end=end.isoformat())
    sched = cal.schedule
    sessions = np.asarray(sched.index.to_numpy(), dtype="datetime64[D]")
    opens = np.asarray(sched["open"].dt.tz_convert(NEW_YORK).dt.tz_localize(None).to_numpy(), dtype="datetime64[m]")
    closes = np.asarray(sched["close"].dt.tz_convert(NEW_YORK).dt.tz_localize(None).to_numpy(), dtype="datetime64[m]")
    for arr in (sessions, opens, closes):
        arr.setflags(write=False)
    return _Schedule(sessions, opens, closes)


def _d64(day: date) -> np.datetime64:
    return np.datetime64(day.isoformat(), "D")


def _to_date(value: np.datetime64) -> date:
    result = value.astype("datetime64[D]").item()
    assert isinstance(result, date)
    return result


def _wall(value: np.datetime64) -> datetime:
    naive = value.astype("datetime64[m]").item()
    assert isinstance(naive, datetime)
    return naive.replace(tzinfo=NEW_YORK)


def _plain_date(day: date, name: str) -> date:
    if isinstance(day, datetime):
        raise ValidationFailed(f"expected a date, got the datetime {day.isoformat()}", field=name)
    return day


class NyseCalendar:
    """NYSE sessions between `start` and `end` (defaults: 2000-01-01 to `default_end()`).

    Implements `alluse.application.market_ports.TradingCalendar`, plus the expiry helpers the option
    model and the weekly routine use.
    """

    def __init__(self, start: date | None = None, end: date | None = None) -> None:
        self._start = _plain_date(start or DEFAULT_START, "start")
        self._end = _plain_date(end or default_end(), "end")
        if self._start > self._end:
            raise ValidationFailed(f"calendar start {self._start} is after its end {self._end}", field="start")
        self._sched = _schedule(self._start, self._end)
        if self._sched.sessions.size == 0:
            raise ValidationFailed(f"no NYSE session between {self._start} and {self._end}", field="start")
        # A fleet asks about the same instant once per account: the last answer is kept.
        self._last_open: tuple[datetime, bool] | None = None

    # ------------------------------------------------------------------ range

    @property
    def start(self) -> date:
        """First day the calendar can answer for."""
        return self._start

    @property
    def end(self) -> date:
        """Last day the calendar can answer for."""
        return self._end

    @property
    def first_session(self) -> date:
        return _to_date(self._sched.sessions[0])

    @property
    def last_session(self) -> date:
        return _to_date(self._sched.sessions[-1])

    def _check(self, day: date, name: str = "day") -> np.datetime64:
        _plain_date(day, name)
        if not self._start <= day <= self._end:
            raise MarketDataGap(
                f"{day} is outside the trading calendar, which covers {self._start} to {self._end}", field=name
            )
        return _d64(day)

    def _session_index(self, session: date, name: str = "session") -> int:
        d = self._check(session, name)
        idx = int(np.searchsorted(self._sched.sessions, d))
        if idx >= self._sched.sessions.size or self._sched.sessions[idx] != d:
            raise MarketDataGap(f"{session} ({session:%A}) is not an NYSE session", field=name)
        return idx

    # ------------------------------------------------------------------ TradingCalendar

    def is_session(self, day: date) -> bool:
        d = self._check(day)
        idx = int(np.searchsorted(self._sched.sessions, d))
        return idx < self._sched.sessions.size and bool(self._sched.sessions[idx] == d)

    def sessions_between(self, start: date, end: date) -> list[date]:
        """Sessions from `start` to `end`, both included (ValidationFailed if start is after end)."""
        return [_to_date(d) for d in self.sessions_array(start, end)]

    def next_session(self, day: date) -> date:
        """The first session strictly after `day`."""
        d = self._check(day)
        idx = int(np.searchsorted(self._sched.sessions, d, side="right"))
        if idx >= self._sched.sessions.size:
            raise MarketDataGap(
                f"no session after {day} within the trading calendar (it ends {self._end})", field="day"
            )
        return _to_date(self._sched.sessions[idx])

    def previous_session(self, day: date) -> date:
        """The last session strictly before `day`."""
        d = self._check(day)
        idx = int(np.searchsorted(self._sched.sessions, d, side="left")) - 1
        if idx < 0:
            raise MarketDataGap(
                f"no session before {day} within the trading calendar (it starts {self._start})", field="day"
            )
        return _to_date(self._sched.sessions[idx])

    def open_at(self, session: date) -> datetime:
        """Opening bell (09:30 ET) of `session`; MarketDataGap if it is not a session."""
        return _wall(self._sched.opens[self._session_index(session)])

    def close_at(self, session: date) -> datetime:
        """16:00 ET, or 13:00 ET on a half day; MarketDataGap if it is not a session."""
        return _wall(self._sched.closes[self._session_index(session)])

    def is_open(self, at: datetime) -> bool:
        """True within [open, close) of a session; `at` must be timezone-aware (any zone)."""
        last = self._last_open
        if last is not None and last[0] == at and at.tzinfo is not None:
            return last[1]
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValidationFailed(f"{at.isoformat()} has no timezone; pass an aware datetime", field="at")
        local = at.astimezone(NEW_YORK)
        day = local.date()
        is_open = False
        if self.is_session(day):
            wall = np.datetime64(local.replace(tzinfo=None), "us")
            idx = self._session_index(day)
            is_open = bool(self._sched.opens[idx] <= wall < self._sched.closes[idx])
        self._last_open = (at, is_open)
        return is_open

    # ------------------------------------------------------------------ helpers

    def is_half_day(self, session: date) -> bool:
        """True when `session` closes early (13:00 ET)."""
        close = self._sched.closes[self._session_index(session)]
        minute = int((close - close.astype("datetime64[D]")).astype(np.int64))
        return minute < _REGULAR_CLOSE_MINUTE

    def sessions_array(self, start: date, end: date) -> DateArray:
        """Sessions from `start` to `end`, both included, as a read-only datetime64[D] array."""
        lo, hi = self._slice(start, end)
        return self._sched.sessions[lo:hi]

    def session_times(self, start: date, end: date) -> tuple[DateArray, DateArray, DateArray]:
        """(sessions datetime64[D], opens, closes datetime64[m] America/New_York wall clock), both ends included."""
        lo, hi = self._slice(start, end)
        return self._sched.sessions[lo:hi], self._sched.opens[lo:hi], self._sched.closes[lo:hi]

    def _slice(self, start: date, end: date) -> tuple[int, int]:
        s = self._check(start, "start")
        e = self._check(end, "end")
        if start > end:
            raise ValidationFailed(f"start {start} is after end {end}", field="start")
        lo = int(np.searchsorted(self._sched.sessions, s, side="left"))
        hi = int(np.searchsorted(self._sched.sessions, e, side="right"))
        return lo, hi

    def week_sessions(self, day: date) -> list[date]:
        """The sessions of the Monday-Friday week containing `day` (a weekend day belongs to its Mon-Sun week)."""
        monday = _plain_date(day, "day") - timedelta(days=day.weekday())
        return self.sessions_between(monday, monday + timedelta(days=4))

    def last_session_of_week(self, day: date) -> date:
        """Weekly option expiry: the Friday of `day`'s week, or the last session before it (Thursday on
        Good Friday)."""
        sessions = self.week_sessions(day)
        if not sessions:
            raise MarketDataGap(f"the week of {day} has no NYSE session", field="day")
        return sessions[-1]

    def monthly_expiry(self, year: int, month: int) -> date:
        """Standard monthly expiry: the third Friday, or the session before it when that Friday is a holiday."""
        if not 1 <= month <= 12:
            raise ValidationFailed(f"month {month} is not 1-12", field="month")
        first = date(year, month, 1)
        third_friday = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
        return third_friday if self.is_session(third_friday) else self.previous_session(third_friday)

    def __repr__(self) -> str:
        return f"NyseCalendar({self._start}, {self._end})"
