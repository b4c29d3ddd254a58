"""Quarterly reinvestment (A11): what each sleeve buys with its quarter's net income, and when."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pytest

from alluse.domain.accounts import Account
from alluse.domain.config import AllUseConfig, LifecycleConfig, default_config, effective_config
from alluse.domain.errors import ValidationFailed
from alluse.domain.lifecycle import (
    _months_after,
    affordable_units,
    leaps_row,
    mark_reinvested,
    reinvest_budgets,
    reinvest_due,
)
from alluse.domain.market import OptionChain
from alluse.domain.sleeves import SleeveKind
from tests.fakes import linked_account

CFG = default_config()
APRIL_1 = date(2026, 4, 1)
NOW = datetime(2026, 1, 5, 15, tzinfo=UTC)
REV, COM = SleeveKind.REV, SleeveKind.COM


def account() -> Account:
    return linked_account(NOW)


def earned(base: Account, sleeve: SleeveKind, realized: int, commission: int = 0) -> Account:
    balance = base.sleeve(sleeve)
    balance = replace(
        balance,
        cash_cents=balance.cash_cents + realized - commission,
        realized_cents=balance.realized_cents + realized,
        commission_cents=balance.commission_cents + commission,
    )
    return replace(base, sleeves={**base.sleeves, sleeve: balance})


def config(**lifecycle: object) -> AllUseConfig:
    return effective_config({"lifecycle": lifecycle})


def test_due_once_on_the_first_session_of_a_reinvestment_month() -> None:
    rules = LifecycleConfig()
    fresh = account()
    assert reinvest_due(APRIL_1, fresh, first_of_month=True, config=rules)
    assert not reinvest_due(APRIL_1, fresh, first_of_month=False, config=rules)
    assert not reinvest_due(date(2026, 5, 1), fresh, first_of_month=True, config=rules)  # May: no quarter start
    assert not reinvest_due(APRIL_1, mark_reinvested(fresh, APRIL_1), first_of_month=True, config=rules)


def test_com_buys_shares_by_weight_and_leaps_on_one_ticker_from_post_tax_income() -> None:
    rich = earned(account(), COM, 12_000_00)  # $12,000 net: $8,400 after 30 % estimated tax
    budgets = reinvest_budgets(rich, CFG, APRIL_1)
    shares = [b for b in budgets if b.kind == "shares"]
    [leaps] = [b for b in budgets if b.kind == "leaps"]
    assert {b.ticker for b in shares} == set(CFG.com.tickers)
    assert all(b.sleeve is COM for b in budgets)
    assert sum(b.budget_cents for b in shares) == pytest.approx(8_400_00 * 0.75, abs=len(shares))  # rounding
    assert leaps.budget_cents == 2_100_00 and leaps.ticker in CFG.com.tickers


def test_rev_keeps_three_quarters_as_wheel_capital_and_buys_leaps_with_the_rest() -> None:
    budgets = reinvest_budgets(earned(account(), REV, 10_000_00, 100_00), CFG, APRIL_1)
    assert [(b.sleeve, b.kind, b.budget_cents) for b in budgets] == [(REV, "leaps", 1_732_50)]  # 25 % of 6,930


def test_the_leaps_ticker_turns_with_the_quarter() -> None:
    rich = earned(account(), REV, 10_000_00)
    turns = {reinvest_budgets(rich, CFG, day)[0].ticker for day in (date(2026, m, 1) for m in (1, 4, 7, 10))}
    assert turns == set(CFG.rev.tickers)


def test_a_pre_tax_basis_reinvests_the_whole_net_income() -> None:
    budgets = reinvest_budgets(earned(account(), REV, 10_000_00), config(reinvest_basis="pre_tax"), APRIL_1)
    assert budgets[0].budget_cents == 2_500_00


def test_a_losing_quarter_or_one_already_reinvested_buys_nothing() -> None:
    assert reinvest_budgets(earned(account(), COM, -5_000_00), CFG, APRIL_1) == []
    done = mark_reinvested(earned(account(), COM, 5_000_00), APRIL_1)
    assert reinvest_budgets(done, CFG, date(2026, 7, 1)) == []  # the base moved to April's net income
    assert reinvest_budgets(earned(done, COM, 1_000_00), CFG, date(2026, 7, 1)) != []


def test_not_enough_free_cash_scales_the_purchases_down_or_skips_them() -> None:
    rich = earned(account(), COM, 12_000_00)
    com = rich.sleeve(COM)
    poor = replace(rich, sleeves={**rich.sleeves, COM: replace(com, cash_cents=com.buffer_cents + 1_000_00)})
    scaled = reinvest_budgets(poor, CFG, APRIL_1)
    assert 0 < sum(b.budget_cents for b in scaled) <= 1_000_00
    assert reinvest_budgets(poor, config(insufficient_funds_policy="skip"), APRIL_1) == []


def test_whole_units_only() -> None:
    assert affordable_units(10_000_00, 199_97, 1) == 50
    assert affordable_units(5_000_00, 60_60, 100) == 0
    with pytest.raises(ValidationFailed) as err:
        affordable_units(1_00, 0, 1)
    assert err.value.field == "price_cents"


def test_months_after_keeps_the_day_or_the_months_last() -> None:
    assert _months_after(date(2026, 4, 1), 12) == date(2027, 4, 1)
    assert _months_after(date(2026, 1, 31), 13) == date(2027, 2, 28)
    assert _months_after(date(2026, 11, 30), 3) == date(2027, 2, 28)


def chain(rows: list[tuple[date, int, bool, float, int]]) -> OptionChain:
    """rows: (expiry, strike cents, is_call, delta, ask cents)."""
    n = len(rows)
    return OptionChain(
        underlying="AAPL",
        as_of=datetime(2026, 4, 1, 15, tzinfo=UTC),
        spot=200.0,
        expiry=np.array([r[0] for r in rows], dtype="datetime64[D]"),
        strike_cents=np.array([r[1] for r in rows], dtype=np.int64),
        is_call=np.array([r[2] for r in rows], dtype=bool),
        bid_cents=np.array([max(r[4] - 10, 0) for r in rows], dtype=np.int64),
        ask_cents=np.array([r[4] for r in rows], dtype=np.int64),
        iv=np.full(n, 0.3),
        delta=np.array([r[3] for r in rows]),
        gamma=np.zeros(n),
        theta=np.zeros(n),
        vega=np.zeros(n),
        open_interest=np.full(n, 1000, dtype=np.int64),
        volume=np.full(n, 500, dtype=np.int64),
    )


def test_the_leaps_is_a_call_12_to_24_months_out_nearest_the_bands_middle() -> None:
    far, near, too_near = date(2028, 1, 21), date(2027, 6, 18), date(2027, 1, 15)
    rows = [
        (near, 15_000, True, 0.72, 6_000),  # in window and band, 0.03 from 0.75
        (far, 14_000, True, 0.76, 7_000),  # in window and band, 0.01 from 0.75: best
        (too_near, 14_000, True, 0.75, 6_500),  # 9.5 months: too near
        (far, 14_000, False, -0.75, 3_000),  # a put
        (far, 19_000, True, 0.55, 3_000),  # delta out of band
        (far, 13_000, True, 0.75, 0),  # no ask
    ]
    assert leaps_row(chain(rows), APRIL_1, LifecycleConfig()) == 1
    assert leaps_row(chain(rows[2:]), APRIL_1, LifecycleConfig()) is None


def test_reinvestment_settings_are_validated() -> None:
    with pytest.raises(ValidationFailed):
        effective_config({"lifecycle": {"com_reinvest": {"shares": "0.8", "leaps": "0.25"}}})
    assert Decimal(str(CFG.lifecycle.rev_reinvest.leaps)) == Decimal("0.25")
