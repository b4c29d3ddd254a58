"""What a protocol run produced, per account and week: the input of summaries and the HTML report.

Money is integer cents. A week is keyed by its Monday.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from alluse.domain.config import TaxConfig
from alluse.domain.tax import estimate_from_gains


@dataclass(frozen=True)
class AccountWeek:
    """One account's week, judged after the week's last close."""

    account_id: str
    week_start: date  # the Monday
    equity_cents: int  # cash + positions marked at the week's last close
    premium_cents: int  # gross premium received for options sold this week (shown, not added to income)
    realized_cents: int  # realised P&L booked this week before commissions (expired premium counts here)
    commission_cents: int
    trades: int  # fills booked this week
    mode_guessed: str | None  # GREEN / RED / CHOP, or None without enough history
    mode_confirmed: str | None
    week_types: dict[str, str]  # sleeve (GEN/REV/COM) -> week-type code (P-EW ... W-IDL)
    events: tuple[str, ...] = ()  # protocol events: denials, alerts, problems (short texts)
    predicted_types: dict[str, str] = field(default_factory=dict)  # sleeve -> type expected at entry
    atr_actions: int = 0  # protective orders the ATR protocol (or a merge's liquidation) placed this week
    reinvested_cents: int = 0  # quarterly reinvestment bought this week (filled value)
    short_term_gain_cents: int = 0  # FIFO lots realised this week, held ≤ tax.long_term_after_days (A12)
    long_term_gain_cents: int = 0

    @property
    def income_cents(self) -> int:
        """Net realised income of the week: realised P&L less commissions."""
        return self.realized_cents - self.commission_cents


@dataclass(frozen=True)
class AccountRun:
    """One account over the whole run."""

    account_id: str
    name: str
    start_equity_cents: int
    weeks: tuple[AccountWeek, ...]
    failure: str | None = None  # set when the account stopped on an error; the others went on
    parent_id: str | None = None  # forked from this account (its start equity came from the parent)
    merged_into: str | None = None  # merging or merged into this account

    @property
    def end_equity_cents(self) -> int:
        return self.weeks[-1].equity_cents if self.weeks else self.start_equity_cents

    @property
    def income_cents(self) -> int:
        return sum(w.income_cents for w in self.weeks)

    @property
    def trades(self) -> int:
        return sum(w.trades for w in self.weeks)

    @property
    def winning_weeks(self) -> int:
        """Weeks whose equity ended above where the week began."""
        wins, before = 0, self.start_equity_cents
        for week in self.weeks:
            wins += week.equity_cents > before
            before = week.equity_cents
        return wins

    @property
    def win_rate(self) -> float | None:
        return self.winning_weeks / len(self.weeks) if self.weeks else None

    def week_type_counts(self) -> Counter[str]:
        return Counter(code for w in self.weeks for code in w.week_types.values())


@dataclass(frozen=True)
class RunResult:
    """A fleet over a run: accounts in a stable order, plus what the run measured."""

    seed: int
    weeks: int
    accounts: tuple[AccountRun, ...]
    elapsed_seconds: float = 0.0
    dynamodb_requests: int = 0
    protocol_events: Counter[str] = field(default_factory=Counter)  # event kind -> count, fleet-wide
    forks: tuple[tuple[str, str, int, date], ...] = ()  # (parent, child, cents, day earmarked)
    merges: tuple[tuple[str, str, int, date], ...] = ()  # (child, into, cents, day merged)
    tax: TaxConfig = field(default_factory=TaxConfig)  # the run's rates, for estimated tax in reports

    @property
    def account_weeks(self) -> int:
        return sum(len(a.weeks) for a in self.accounts)

    @property
    def start_equity_cents(self) -> int:
        """Capital put in at the start: a fork's child is funded from its parent, not from outside."""
        return sum(a.start_equity_cents for a in self.accounts if a.parent_id is None)

    @property
    def forked(self) -> list[AccountRun]:
        return [a for a in self.accounts if a.parent_id is not None]

    @property
    def end_equity_cents(self) -> int:
        return sum(a.end_equity_cents for a in self.accounts)

    @property
    def income_cents(self) -> int:
        return sum(a.income_cents for a in self.accounts)

    @property
    def trades(self) -> int:
        return sum(a.trades for a in self.accounts)

    @property
    def premium_cents(self) -> int:
        return sum(w.premium_cents for a in self.accounts for w in a.weeks)

    @property
    def win_rate(self) -> float | None:
        weeks = self.account_weeks
        return sum(a.winning_weeks for a in self.accounts) / weeks if weeks else None

    def week_type_counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for account in self.accounts:
            total.update(account.week_type_counts())
        return total

    def fleet_equity_by_week(self) -> list[tuple[date, int]]:
        """Total equity per week across the accounts that have that week."""
        totals: dict[date, int] = {}
        for account in self.accounts:
            for week in account.weeks:
                totals[week.week_start] = totals.get(week.week_start, 0) + week.equity_cents
        return sorted(totals.items())

    def estimated_tax_cents(self) -> int:
        """Each account's estimate on its run's FIFO lot gains by term (A12; estimates, not advice)."""
        return sum(
            estimate_from_gains(
                sum(w.short_term_gain_cents for w in a.weeks), sum(w.long_term_gain_cents for w in a.weeks), self.tax
            ).tax_cents
            for a in self.accounts
        )

    def type_hits(self) -> tuple[int, int]:
        """(sleeve-weeks whose type at entry matched the type at close, sleeve-weeks with both)."""
        pairs = [
            (code, w.predicted_types[sleeve])
            for a in self.accounts
            for w in a.weeks
            for sleeve, code in w.week_types.items()
            if sleeve in w.predicted_types
        ]
        return sum(code == predicted for code, predicted in pairs), len(pairs)

    def mode_hits(self) -> tuple[int, int]:
        """(weeks whose guess matched the confirmed mode, weeks with both)."""
        judged = [w for a in self.accounts for w in a.weeks if w.mode_guessed and w.mode_confirmed]
        return sum(w.mode_guessed == w.mode_confirmed for w in judged), len(judged)
