"""Weekly, monthly and quarterly figures of a run, per account and for the fleet (B§9 reports).

Every row is built from the run's account-weeks (integer cents), so the fleet's rows are the sum of the
accounts' rows and each account's rows add up to its run. A week belongs to the month and quarter of its
Monday.

Tax is an estimate, not advice: the period's FIFO lot gains (A12) by term, each term's net loss offsetting
the other's gain, at `tax.short_term_rate` and `tax.long_term_rate` (`domain.tax.estimate_from_gains`),
the period taken alone (no carry across periods). Post-tax income is income less that estimate.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from alluse.application.run_results import AccountRun, AccountWeek, RunResult
from alluse.domain.tax import estimate_from_gains

Period = Literal["week", "month", "quarter"]
PERIODS: tuple[Period, ...] = ("week", "month", "quarter")
FLEET = "FLEET"


@dataclass(frozen=True)
class PeriodRow:
    account_id: str  # or FLEET
    period: str  # 2026-W03, 2026-01, 2026-Q1
    first_week: date
    last_week: date
    weeks: int
    start_equity_cents: int
    end_equity_cents: int
    premium_cents: int
    realized_cents: int
    commission_cents: int
    income_cents: int  # realised − commissions (pre-tax)
    estimated_tax_cents: int
    post_tax_income_cents: int
    pre_tax_return_pct: str  # income / start equity, in %, two decimals
    post_tax_return_pct: str
    reinvested_cents: int  # quarterly reinvestment bought (income vs reinvestment)
    atr_actions: int  # ATR closes and rolls placed
    mode_hits: str  # "guessed right / judged" weeks
    trades: int
    winning_weeks: int
    max_drawdown_cents: int  # largest fall of week-end equity from its running peak inside the period
    week_types: str  # "P-EW 3, W-IDL 1"
    forks: int
    merges: int


def period_of(monday: date, period: Period) -> str:
    if period == "week":
        year, week, _ = monday.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{monday:%Y-%m}"
    return f"{monday.year}-Q{(monday.month - 1) // 3 + 1}"


def account_rows(run: AccountRun, period: Period, result: RunResult) -> list[PeriodRow]:
    groups: dict[str, list[tuple[int, AccountWeek]]] = {}
    before = run.start_equity_cents
    for week in run.weeks:
        groups.setdefault(period_of(week.week_start, period), []).append((before, week))
        before = week.equity_cents
    forks = [(c, d) for p, c, _, d in result.forks if p == run.account_id]
    merges = [(c, d) for c, i, _, d in result.merges if run.account_id in (c, i)]
    return [_row(run.account_id, key, weeks, period, result, forks, merges) for key, weeks in groups.items()]


def fleet_rows(result: RunResult, period: Period) -> list[PeriodRow]:
    """Each period's accounts added up (an account without that period adds nothing)."""
    by_period: dict[str, list[PeriodRow]] = {}
    for run in result.accounts:
        for n, row in enumerate(account_rows(run, period, result)):
            if n == 0 and run.parent_id is not None:  # a fork's capital came from its parent: not new money
                row = replace(row, start_equity_cents=0)
            by_period.setdefault(row.period, []).append(row)
    return [_total(key, rows, result, period) for key, rows in sorted(by_period.items())]


def rows(result: RunResult, period: Period) -> list[PeriodRow]:
    """The fleet's rows, then every account's, for one kind of period."""
    per_account = [row for run in result.accounts for row in account_rows(run, period, result)]
    return [*fleet_rows(result, period), *per_account]


def to_csv(table: Sequence[PeriodRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(PeriodRow.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(row).items()})
    return out.getvalue()


def to_jsonable(table: Iterable[PeriodRow]) -> list[dict[str, object]]:
    return [{k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(r).items()} for r in table]


# --- internals -------------------------------------------------------------------------------------------------


def _row(
    account_id: str,
    key: str,
    weeks: Sequence[tuple[int, AccountWeek]],
    period: Period,
    result: RunResult,
    forks: Sequence[tuple[str, date]],
    merges: Sequence[tuple[str, date]],
) -> PeriodRow:
    income = sum(w.income_cents for _, w in weeks)
    short, long = sum(w.short_term_gain_cents for _, w in weeks), sum(w.long_term_gain_cents for _, w in weeks)
    tax = estimate_from_gains(short, long, result.tax).tax_cents
    codes: dict[str, int] = {}
    for _, week in weeks:
        for code in week.week_types.values():
            codes[code] = codes.get(code, 0) + 1
    return PeriodRow(
        account_id=account_id,
        period=key,
        first_week=weeks[0][1].week_start,
        last_week=weeks[-1][1].week_start,
        weeks=len(weeks),
        start_equity_cents=weeks[0][0],
        end_equity_cents=weeks[-1][1].equity_cents,
        premium_cents=sum(w.premium_cents for _, w in weeks),
        realized_cents=sum(w.realized_cents for _, w in weeks),
        commission_cents=sum(w.commission_cents for _, w in weeks),
        income_cents=income,
        estimated_tax_cents=tax,
        post_tax_income_cents=income - tax,
        pre_tax_return_pct=_pct(income, weeks[0][0]),
        post_tax_return_pct=_pct(income - tax, weeks[0][0]),
        reinvested_cents=sum(w.reinvested_cents for _, w in weeks),
        atr_actions=sum(w.atr_actions for _, w in weeks),
        mode_hits=_hits([w for _, w in weeks]),
        trades=sum(w.trades for _, w in weeks),
        winning_weeks=sum(w.equity_cents > before for before, w in weeks),
        max_drawdown_cents=_drawdown([weeks[0][0], *(w.equity_cents for _, w in weeks)]),
        week_types=", ".join(f"{c} {n}" for c, n in sorted(codes.items())),
        forks=sum(period_of(d, period) == key for _, d in forks),
        merges=sum(period_of(d, period) == key for _, d in merges),
    )


def _drawdown(equities: Sequence[int]) -> int:
    peak, worst = equities[0], 0
    for value in equities:
        peak = max(peak, value)
        worst = max(worst, peak - value)
    return worst


def _total(key: str, parts: Sequence[PeriodRow], result: RunResult, period: Period) -> PeriodRow:
    income = sum(r.income_cents for r in parts)
    start = sum(r.start_equity_cents for r in parts)
    post_tax = sum(r.post_tax_income_cents for r in parts)
    codes: dict[str, int] = {}
    for row in parts:
        for item in filter(None, row.week_types.split(", ")):
            code, count = item.rsplit(" ", 1)
            codes[code] = codes.get(code, 0) + int(count)
    return PeriodRow(
        account_id=FLEET,
        period=key,
        first_week=min(r.first_week for r in parts),
        last_week=max(r.last_week for r in parts),
        weeks=max(r.weeks for r in parts),
        start_equity_cents=start,
        end_equity_cents=sum(r.end_equity_cents for r in parts),
        premium_cents=sum(r.premium_cents for r in parts),
        realized_cents=sum(r.realized_cents for r in parts),
        commission_cents=sum(r.commission_cents for r in parts),
        income_cents=income,
        estimated_tax_cents=sum(r.estimated_tax_cents for r in parts),  # each account's own estimate
        post_tax_income_cents=post_tax,
        pre_tax_return_pct=_pct(income, start),
        post_tax_return_pct=_pct(post_tax, start),
        reinvested_cents=sum(r.reinvested_cents for r in parts),
        atr_actions=sum(r.atr_actions for r in parts),
        mode_hits=_sum_hits(r.mode_hits for r in parts),
        trades=sum(r.trades for r in parts),
        winning_weeks=sum(r.winning_weeks for r in parts),
        max_drawdown_cents=max(r.max_drawdown_cents for r in parts),  # the worst account's
        week_types=", ".join(f"{c} {n}" for c, n in sorted(codes.items())),
        forks=_count(result.forks, key, period),
        merges=_count(result.merges, key, period),
    )


def _count(events: Sequence[tuple[str, str, int, date]], key: str, period: Period) -> int:
    return sum(period_of(day, period) == key for *_, day in events)


def _pct(part_cents: int, whole_cents: int) -> str:
    """part / whole in %, half-even to two decimals (exact: Decimal of integer cents)."""
    if whole_cents <= 0:
        return ""
    return str((Decimal(part_cents) * 100 / Decimal(whole_cents)).quantize(Decimal("0.01"), ROUND_HALF_EVEN))


def _hits(weeks: Sequence[AccountWeek]) -> str:
    judged = [w for w in weeks if w.mode_guessed and w.mode_confirmed]
    return f"{sum(w.mode_guessed == w.mode_confirmed for w in judged)}/{len(judged)}"


def _sum_hits(parts: Iterable[str]) -> str:
    pairs = [tuple(int(x) for x in p.split("/")) for p in parts]
    return f"{sum(p[0] for p in pairs)}/{sum(p[1] for p in pairs)}"
