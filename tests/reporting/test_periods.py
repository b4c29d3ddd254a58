"""Weekly, monthly and quarterly report rows: their totals are the run's (and so the ledger's) totals."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from alluse.application.run_results import AccountRun, AccountWeek, RunResult
from alluse.domain.config import TaxConfig
from alluse.reporting import periods

MONDAY = date(2026, 1, 26)  # weeks run into February and across a quarter's end later


def weeks(account_id: str, figures: list[tuple[int, int, int]]) -> tuple[AccountWeek, ...]:
    """figures: (equity, realized, commission) per week."""
    return tuple(
        AccountWeek(
            account_id=account_id,
            week_start=MONDAY + timedelta(weeks=n),
            equity_cents=equity,
            premium_cents=abs(realized) + 1_00,
            realized_cents=realized,
            commission_cents=commission,
            trades=3,
            mode_guessed=None,
            mode_confirmed=None,
            week_types={"GEN": "P-EW", "REV": "W-IDL"},
            short_term_gain_cents=realized - commission,  # the FIFO lots' gain, all short-term here
        )
        for n, (equity, realized, commission) in enumerate(figures)
    )


def result(runs: list[AccountRun], **extra: object) -> RunResult:
    return RunResult(seed=1, weeks=max(len(r.weeks) for r in runs), accounts=tuple(runs), **extra)  # type: ignore[arg-type]


PARENT = AccountRun("A1", "A1", 100_000_00, weeks("A1", [(101_000_00, 1_500_00, 10_00), (99_000_00, -2_000_00, 5_00)]))
OTHER = AccountRun("A2", "A2", 50_000_00, weeks("A2", [(50_500_00, 600_00, 1_00), (51_000_00, 500_00, 1_00)]))


def test_a_week_belongs_to_the_month_and_quarter_of_its_monday() -> None:
    assert periods.period_of(date(2026, 3, 30), "month") == "2026-03"  # its Friday is in April
    assert periods.period_of(date(2026, 3, 30), "quarter") == "2026-Q1"
    assert periods.period_of(date(2026, 1, 5), "week") == "2026-W02"


def test_account_rows_add_up_to_the_accounts_run() -> None:
    run = result([PARENT])
    for period in periods.PERIODS:
        rows = periods.account_rows(PARENT, period, run)
        assert sum(r.income_cents for r in rows) == PARENT.income_cents == 1_500_00 - 10_00 - 2_000_00 - 5_00
        assert sum(r.trades for r in rows) == PARENT.trades
        assert rows[-1].end_equity_cents == PARENT.end_equity_cents
        assert rows[0].start_equity_cents == PARENT.start_equity_cents


def test_fleet_rows_are_the_sum_of_the_accounts_rows() -> None:
    run = result([PARENT, OTHER])
    fleet = periods.fleet_rows(run, "month")
    assert [r.period for r in fleet] == ["2026-01", "2026-02"]
    january, february = fleet
    assert january.income_cents == (1_500_00 - 10_00) + (600_00 - 1_00)
    assert february.end_equity_cents == 99_000_00 + 51_000_00
    assert january.start_equity_cents == 150_000_00
    assert sum(r.income_cents for r in fleet) == run.income_cents


def test_tax_is_estimated_on_the_periods_lot_gains_by_term() -> None:
    run = result([PARENT], tax=TaxConfig(short_term_rate=Decimal("0.30"), long_term_rate=Decimal("0.15")))
    january, february = periods.account_rows(PARENT, "month", run)
    assert january.estimated_tax_cents == 447_00  # 30 % of $1,490.00 short-term
    assert january.post_tax_income_cents == 1_043_00
    assert february.estimated_tax_cents == 0 and february.post_tax_income_cents == february.income_cents < 0
    held = AccountRun(
        "A3", "A3", 10_000_00, (replace(weeks("A3", [(11_000_00, 0, 0)])[0], long_term_gain_cents=1_000_00),)
    )
    [row] = periods.account_rows(held, "quarter", result([held]))
    assert row.estimated_tax_cents == 150_00  # 15 % long-term


def test_a_forks_capital_is_not_new_money_for_the_fleet() -> None:
    child = AccountRun("A1-F1", "A1-F1", 3_000_00, weeks("A1-F1", [(3_010_00, 0, 0)]), parent_id="A1")
    run = result([PARENT, child], forks=(("A1", "A1-F1", 3_000_00, MONDAY),))
    [january, _] = periods.fleet_rows(run, "month")
    assert january.start_equity_cents == PARENT.start_equity_cents  # not + the child's capital
    assert january.forks == 1
    assert run.start_equity_cents == PARENT.start_equity_cents


def test_returns_reinvestment_atr_actions_and_mode_hits_per_period() -> None:
    weekly = weeks("A4", [(101_000_00, 1_000_00, 0), (102_000_00, 1_000_00, 0)])
    marked = (
        replace(weekly[0], reinvested_cents=500_00, atr_actions=2, mode_guessed="GREEN", mode_confirmed="GREEN"),
        replace(weekly[1], reinvested_cents=250_00, atr_actions=1, mode_guessed="RED", mode_confirmed="CHOP"),
    )
    run = AccountRun("A4", "A4", 100_000_00, marked)
    [quarter] = periods.account_rows(run, "quarter", result([run]))
    assert quarter.reinvested_cents == 750_00 and quarter.atr_actions == 3 and quarter.mode_hits == "1/2"
    assert quarter.pre_tax_return_pct == "2.00"  # $2,000 on $100,000
    assert quarter.post_tax_return_pct == "1.40"  # after 30 % estimated tax
    [fleet] = periods.fleet_rows(result([run, run]), "quarter")
    assert fleet.mode_hits == "2/4" and fleet.pre_tax_return_pct == "2.00"


def test_csv_has_one_line_per_row_with_integer_cents() -> None:
    table = periods.rows(result([PARENT, OTHER]), "quarter")
    parsed = list(csv.DictReader(io.StringIO(periods.to_csv(table))))
    assert len(parsed) == len(table) == 3  # the fleet's Q1, then each account's
    assert parsed[0]["account_id"] == periods.FLEET
    assert int(parsed[0]["income_cents"]) == sum(int(p["income_cents"]) for p in parsed[1:])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1_00, 10**9), st.integers(-(10**7), 10**7), st.integers(0, 10**5)),
        min_size=1,
        max_size=20,
    )
)
def test_every_kind_of_period_sums_to_the_same_totals(figures: list[tuple[int, int, int]]) -> None:
    account = AccountRun("A9", "A9", 500_000_00, weeks("A9", figures))
    run = result([account])
    for period in periods.PERIODS:
        rows = periods.account_rows(account, period, run)
        assert sum(r.income_cents for r in rows) == account.income_cents
        assert sum(r.realized_cents for r in rows) == sum(w.realized_cents for w in account.weeks)
        assert sum(r.commission_cents for r in rows) == sum(w.commission_cents for w in account.weeks)
        assert sum(r.weeks for r in rows) == len(account.weeks)
        assert all(r.post_tax_income_cents + r.estimated_tax_cents == r.income_cents for r in rows)
        assert all(r.max_drawdown_cents >= 0 for r in rows)
