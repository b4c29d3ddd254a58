"""NyseCalendar: holidays, half days, opening hours, expiries, range limits (A3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from alluse.adapters.sim.calendar import NEW_YORK, NyseCalendar, default_end
from alluse.application.market_ports import TradingCalendar
from alluse.domain.errors import MarketDataGap, ValidationFailed


@pytest.fixture(scope="module")
def cal() -> NyseCalendar:
    return NyseCalendar()


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


def test_implements_the_port(cal: NyseCalendar) -> None:
    port: TradingCalendar = cal
    assert port.is_session(date(2026, 11, 23))


def test_thanksgiving_week_2026(cal: NyseCalendar) -> None:
    thanksgiving, black_friday = date(2026, 11, 26), date(2026, 11, 27)
    assert not cal.is_session(thanksgiving)
    assert cal.is_session(black_friday)
    assert cal.is_half_day(black_friday)
    assert cal.open_at(black_friday) == ny(black_friday, 9, 30)
    assert cal.close_at(black_friday) == ny(black_friday, 13)
    assert cal.close_at(black_friday).utcoffset() == timedelta(hours=-5)
    assert cal.week_sessions(thanksgiving) == [date(2026, 11, d) for d in (23, 24, 25, 27)]
    assert cal.last_session_of_week(thanksgiving) == black_friday
    assert not cal.is_half_day(date(2026, 11, 25))
    assert cal.close_at(date(2026, 11, 25)) == ny(date(2026, 11, 25), 16)


def test_good_friday_moves_the_weekly_expiry_to_thursday(cal: NyseCalendar) -> None:
    assert not cal.is_session(date(2026, 4, 3))
    assert cal.last_session_of_week(date(2026, 3, 30)) == date(2026, 4, 2)
    assert cal.last_session_of_week(date(2026, 4, 5)) == date(2026, 4, 2)  # a Sunday belongs to its Mon-Sun week
    assert cal.week_sessions(date(2026, 4, 1)) == [
        date(2026, 3, 30),
        date(2026, 3, 31),
        date(2026, 4, 1),
        date(2026, 4, 2),
    ]
    assert cal.last_session_of_week(date(2026, 4, 8)) == date(2026, 4, 10)


def test_christmas_2026(cal: NyseCalendar) -> None:
    assert not cal.is_session(date(2026, 12, 25))
    eve = date(2026, 12, 24)
    assert cal.is_half_day(eve)
    assert cal.close_at(eve) == ny(eve, 13)
    assert cal.last_session_of_week(eve) == eve
    assert not cal.is_session(date(2027, 1, 1))


def test_independence_day_observed_on_friday_3_july_2026(cal: NyseCalendar) -> None:
    assert not cal.is_session(date(2026, 7, 3))
    assert cal.close_at(date(2026, 7, 2)) == ny(date(2026, 7, 2), 16)
    assert cal.close_at(date(2026, 7, 2)).utcoffset() == timedelta(hours=-4)  # summer time
    assert cal.last_session_of_week(date(2026, 7, 1)) == date(2026, 7, 2)
    assert cal.next_session(date(2026, 7, 2)) == date(2026, 7, 6)


def test_weekend_and_navigation_across_holidays(cal: NyseCalendar) -> None:
    saturday = date(2026, 11, 28)
    assert not cal.is_session(saturday)
    assert cal.next_session(saturday) == date(2026, 11, 30)
    assert cal.previous_session(saturday) == date(2026, 11, 27)
    assert cal.next_session(date(2026, 11, 25)) == date(2026, 11, 27)
    assert cal.previous_session(date(2026, 11, 27)) == date(2026, 11, 25)
    assert cal.next_session(date(2026, 12, 31)) == date(2027, 1, 4)
    assert cal.previous_session(date(2026, 4, 6)) == date(2026, 4, 2)
    with pytest.raises(MarketDataGap, match="not an NYSE session"):
        cal.open_at(saturday)


def test_sessions_between_is_inclusive(cal: NyseCalendar) -> None:
    assert cal.sessions_between(date(2026, 12, 23), date(2026, 12, 28)) == [
        date(2026, 12, 23),
        date(2026, 12, 24),
        date(2026, 12, 28),
    ]
    assert cal.sessions_between(date(2026, 12, 26), date(2026, 12, 27)) == []
    arr = cal.sessions_array(date(2026, 12, 23), date(2026, 12, 28))
    assert arr.dtype == np.dtype("datetime64[D]")
    assert arr.tolist() == cal.sessions_between(date(2026, 12, 23), date(2026, 12, 28))
    with pytest.raises(ValidationFailed):
        cal.sessions_between(date(2026, 12, 28), date(2026, 12, 23))
    assert len(cal.sessions_between(date(2026, 1, 1), date(2026, 12, 31))) == 251


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [(9, 29, False), (9, 30, True), (12, 0, True), (15, 59, True), (16, 0, False), (16, 30, False)],
)
def test_is_open_on_a_regular_day(cal: NyseCalendar, hour: int, minute: int, expected: bool) -> None:
    assert cal.is_open(ny(date(2026, 11, 24), hour, minute)) is expected


def test_is_open_edges(cal: NyseCalendar) -> None:
    half = date(2026, 11, 27)
    assert cal.is_open(ny(half, 12, 59))
    assert not cal.is_open(ny(half, 13))
    assert not cal.is_open(ny(date(2026, 11, 26), 11))  # Thanksgiving
    assert not cal.is_open(ny(date(2026, 11, 28), 11))  # Saturday
    assert cal.is_open(datetime(2026, 11, 24, 15, 59, 59, tzinfo=NEW_YORK))
    # Any zone works: 14:30 UTC is 09:30 EST, 14:29 UTC is 09:29.
    assert cal.is_open(datetime(2026, 11, 24, 14, 30, tzinfo=UTC))
    assert not cal.is_open(datetime(2026, 11, 24, 14, 29, tzinfo=UTC))
    assert cal.is_open(datetime(2026, 7, 2, 13, 30, tzinfo=UTC))  # 09:30 EDT
    with pytest.raises(ValidationFailed, match="timezone"):
        cal.is_open(datetime(2026, 11, 24, 10, 0))


def test_monthly_expiry(cal: NyseCalendar) -> None:
    assert cal.monthly_expiry(2026, 11) == date(2026, 11, 20)
    assert cal.monthly_expiry(2026, 1) == date(2026, 1, 16)
    assert cal.monthly_expiry(2026, 6) == date(2026, 6, 18)  # Juneteenth falls on the third Friday
    assert cal.monthly_expiry(2025, 4) == date(2025, 4, 17)  # Good Friday falls on the third Friday
    assert cal.monthly_expiry(2027, 1) == date(2027, 1, 15)
    with pytest.raises(ValidationFailed):
        cal.monthly_expiry(2026, 13)


def test_leaps_horizon_is_answered(cal: NyseCalendar) -> None:
    far = date.today() + timedelta(days=913)  # ~2.5 years
    nxt = cal.next_session(far)
    assert cal.is_session(nxt)
    assert cal.close_at(nxt).hour in (13, 16)
    year = far.year + 1
    assert cal.monthly_expiry(year, 1).month == 1
    assert default_end() >= date.today() + timedelta(days=3 * 366)


def test_outside_the_range_is_a_data_gap() -> None:
    small = NyseCalendar(date(2020, 1, 1), date(2020, 12, 31))
    with pytest.raises(MarketDataGap, match="outside the trading calendar"):
        small.is_session(date(2021, 1, 4))
    with pytest.raises(MarketDataGap):
        small.next_session(date(2020, 12, 31))
    with pytest.raises(MarketDataGap):
        small.previous_session(date(2020, 1, 2))
    with pytest.raises(MarketDataGap):
        small.is_open(datetime(2019, 6, 3, 10, tzinfo=NEW_YORK))
    assert small.first_session == date(2020, 1, 2)
    assert small.last_session == date(2020, 12, 31)
    with pytest.raises(ValidationFailed):
        NyseCalendar(date(2021, 1, 1), date(2020, 1, 1))


def test_schedule_is_shared_between_instances(cal: NyseCalendar) -> None:
    again = NyseCalendar()
    assert again._sched is cal._sched


def test_datetimes_are_refused_where_dates_are_expected(cal: NyseCalendar) -> None:
    with pytest.raises(ValidationFailed, match="expected a date"):
        cal.is_session(datetime(2026, 11, 24, 10, tzinfo=NEW_YORK))
