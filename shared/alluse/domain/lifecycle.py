"""Forks and merges (A9, A10, B§6): when an account forks a child out of its surplus, when a forked
account merges into its nearest active ancestor's Com-Acc, and how the money moves so that it is
always counted exactly once (see `accounts.LifecycleState` and `money_in_system`).

Pure functions of accounts, equities and configuration; the watchdog (application) reads the store and
the broker, and commits what these return.

Decisions (the spec leaves them open):

- Surplus of a sleeve = its equity − the capital contributed to it − the estimated tax on that gain at
  the short-term rate (weekly options are held days, never a year; the FIFO lot ledger is not yet fed by
  the step). A loss has no tax and no surplus.
- One fork per account per evaluation, Gen-Acc's rule first. The earmark is the whole post-tax surplus,
  taken from the sleeve's free cash (never its buffer); when free cash cannot cover it the fork waits for
  the next evaluation rather than fork less.
- A child is named `<parent>-F<n>` (n counts the parent's forks), so re-running the watchdog after a
  crash finds the same child instead of making a second one.
- A Gen-Acc child is split `lifecycle.fork_split` (A9: 50 % Gen, 50 % Com); a Rev-Acc child gets the
  allocation's weights (A9: a new 40/30/30 account). Each sleeve keeps its buffer.
- A merge goes to the nearest ancestor that still trades (ACTIVE or SAFE); the merged cash lands in its
  Com-Acc as contributed capital, with the Com-Acc's buffer share. Positions are liquidated first (A10's
  default); the paper broker cannot move positions in kind, so `merge_policy=in_kind` is refused.
- Evaluations run on the first session of each `lifecycle.reinvest_months` month (quarterly, A9), of each
  week (weekly), or every session (daily).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np

from alluse.domain.accounts import (
    Account,
    AccountStatus,
    CashMovement,
    MovementKind,
    open_account,
)
from alluse.domain.config import AllUseConfig, LifecycleConfig
from alluse.domain.errors import Conflict, InsufficientFunds, ValidationFailed
from alluse.domain.market import OptionChain
from alluse.domain.money import fraction_of, parse_dollars
from alluse.domain.sleeves import SLEEVE_ORDER, SleeveKind

FORKING_SLEEVES = (SleeveKind.GEN, SleeveKind.REV)  # Com-Acc never forks (B§6)
_TRADING = (AccountStatus.ACTIVE, AccountStatus.SAFE)


@dataclass(frozen=True)
class ForkDecision:
    parent_id: str
    child_id: str
    sleeve: SleeveKind  # the sleeve whose surplus funds the child
    amount_cents: int
    weights: Mapping[SleeveKind, Decimal]  # the child's split
    surplus_cents: int
    threshold_cents: int


@dataclass(frozen=True)
class MergeDecision:
    child_id: str
    into_id: str
    equity_cents: int
    threshold_cents: int


def evaluation_due(on: date, *, first_of_week: bool, first_of_month: bool, config: LifecycleConfig) -> bool:
    """Whether the watchdogs evaluate on session `on` (the caller knows the calendar)."""
    if config.fork_cadence == "daily":
        return True
    if config.fork_cadence == "weekly":
        return first_of_week
    return first_of_month and on.month in config.reinvest_months


def estimated_tax_cents(gain_cents: int, config: AllUseConfig) -> int:
    """Tax on a gain at the short-term rate, half-even to the cent; no tax on a loss."""
    if gain_cents <= 0:
        return 0
    return int((Decimal(gain_cents) * config.tax.short_term_rate).to_integral_value(ROUND_HALF_EVEN))


def surplus_cents(equity_cents: int, contributed_cents: int, config: AllUseConfig, *, forked_cents: int = 0) -> int:
    """Post-tax surplus (A9) not yet forked: the whole gain (what is held plus what was forked out, less
    the capital) after its estimated tax, less what earlier forks took. The tax kept back at a fork is
    never forked later as if it were new gain."""
    gain = equity_cents + forked_cents - contributed_cents
    return gain - estimated_tax_cents(gain, config) - forked_cents


def child_id(parent: Account) -> str:
    return f"{parent.account_id}-F{parent.lifecycle.forks_made + 1}"


def decide_fork(parent: Account, sleeve_equity: Mapping[SleeveKind, int], config: AllUseConfig) -> ForkDecision | None:
    """The fork due now, or None: Gen-Acc's rule, then Rev-Acc's (A9). An account that still has a
    fork in flight, is merging, or does not trade forks nothing."""
    state = parent.lifecycle
    if parent.status not in _TRADING or state.earmarks or state.merging_into or state.funding_from:
        return None
    rules = config.lifecycle
    thresholds = {
        SleeveKind.GEN: parse_dollars(rules.gen_fork_threshold, field="lifecycle.gen_fork_threshold"),
        SleeveKind.REV: parse_dollars(rules.rev_fork_threshold, field="lifecycle.rev_fork_threshold"),
    }
    for sleeve in FORKING_SLEEVES:
        if sleeve not in sleeve_equity:
            continue
        forked = state.forked_cents.get(sleeve, 0)
        surplus = surplus_cents(
            sleeve_equity[sleeve], parent.sleeve(sleeve).contributed_cents, config, forked_cents=forked
        )
        if surplus < thresholds[sleeve]:
            continue
        if sleeve is SleeveKind.GEN:
            weights = {SleeveKind.GEN: rules.fork_split.gen, SleeveKind.COM: rules.fork_split.com}
        else:
            weights = dict(config.allocation.weights())
        split = {k: weights.get(k, Decimal(0)) for k in SLEEVE_ORDER}
        return ForkDecision(parent.account_id, child_id(parent), sleeve, surplus, split, surplus, thresholds[sleeve])
    return None


def earmark(parent: Account, decision: ForkDecision) -> Account:
    """Set the surplus aside for the child: it leaves the sleeve (not traded any more) and waits in the
    parent's earmarks until the transfer is confirmed. Only free cash is taken, never the buffer."""
    if decision.child_id in parent.lifecycle.earmarks:
        return parent  # already set aside: a re-run changes nothing
    balance = parent.sleeve(decision.sleeve)
    if decision.amount_cents > balance.free_cents:
        raise InsufficientFunds(
            f"{decision.sleeve.label} has {balance.free_cents} cents free for a fork of {decision.amount_cents}",
            field="amount_cents",
        )
    sleeves = {
        **parent.sleeves,
        # The contributed basis stays: the surplus was gain over it.
        decision.sleeve: replace(balance, cash_cents=balance.cash_cents - decision.amount_cents),
    }
    forked = parent.lifecycle.forked_cents
    state = replace(
        parent.lifecycle,
        earmarks={**parent.lifecycle.earmarks, decision.child_id: decision.amount_cents},
        forks_made=parent.lifecycle.forks_made + 1,
        forked_cents={**forked, decision.sleeve: forked.get(decision.sleeve, 0) + decision.amount_cents},
    )
    return replace(parent, sleeves=sleeves, lifecycle=state)


def open_child(
    parent: Account, decision: ForkDecision, *, buffer_pct: Decimal, now: datetime
) -> tuple[Account, CashMovement]:
    """The child main account, waiting for its brokerage link and for the parent's transfer."""
    child, funding = open_account(
        decision.child_id,
        name=f"{parent.name} fork {decision.child_id.rsplit('-F', 1)[-1]}",
        capital_cents=decision.amount_cents,
        weights=decision.weights,
        buffer_pct=buffer_pct,
        now=now,
        parent_id=parent.account_id,
        lineage_id=parent.lineage_id or parent.account_id,
    )
    return replace(child, lifecycle=replace(child.lifecycle, funding_from=parent.account_id)), funding


def confirm_fork(parent: Account, child: Account) -> tuple[Account, Account]:
    """The transfer arrived: the earmark leaves the parent and the child's money counts as its own."""
    if child.lifecycle.funding_from != parent.account_id:
        raise Conflict(f"{child.account_id} is not waiting for funding from {parent.account_id}", field="child")
    amount = parent.lifecycle.earmarks.get(child.account_id)
    if amount is None:
        raise Conflict(f"{parent.account_id} has no earmark for {child.account_id}", field="earmarks")
    if amount != child.cash_cents:
        raise Conflict(f"earmark {amount} and child cash {child.cash_cents} differ", field="earmarks")
    earmarks = {k: v for k, v in parent.lifecycle.earmarks.items() if k != child.account_id}
    parent = replace(parent, lifecycle=replace(parent.lifecycle, earmarks=earmarks))
    child = replace(child, lifecycle=replace(child.lifecycle, funding_from=None))
    return parent, child


# --- merges ------------------------------------------------------------------------------------------


def merge_target(child: Account, accounts: Mapping[str, Account]) -> str | None:
    """The nearest ancestor that still trades (A10), or None when there is none."""
    seen: set[str] = set()
    ancestor = child.parent_id
    while ancestor is not None and ancestor not in seen:
        seen.add(ancestor)
        account = accounts.get(ancestor)
        if account is None:
            return None
        if account.status in _TRADING and account.lifecycle.merging_into is None:
            return ancestor  # an ancestor that is itself merging away cannot receive
        ancestor = account.parent_id
    return None


def decide_merge(
    child: Account, equity_cents: int, accounts: Mapping[str, Account], config: AllUseConfig
) -> MergeDecision | None:
    """A forked account whose equity reached the threshold merges (A10)."""
    state = child.lifecycle
    if child.parent_id is None or child.status not in _TRADING or state.merging_into or state.funding_from:
        return None
    if state.earmarks:
        return None  # its own fork finishes first: the earmark's money must not be merged away
    threshold = parse_dollars(config.lifecycle.merge_threshold, field="lifecycle.merge_threshold")
    if equity_cents < threshold:
        return None
    if config.lifecycle.merge_policy == "in_kind":
        raise ValidationFailed(
            "merge_policy in_kind: positions cannot move in kind on this broker; use liquidate",
            field="lifecycle.merge_policy",
        )
    target = merge_target(child, accounts)
    if target is None:
        return None
    return MergeDecision(child.account_id, target, equity_cents, threshold)


def start_merge(child: Account, decision: MergeDecision) -> Account:
    """No new risk from now on: the child liquidates, then hands its cash over."""
    return replace(child, lifecycle=replace(child.lifecycle, merging_into=decision.into_id))


def is_flat(account: Account) -> bool:
    return not any(q for s in account.sleeves.values() for q in s.positions.values())


def complete_merge_out(child: Account) -> Account:
    """The liquidated child hands all its cash over and is MERGED (terminal, A10)."""
    if child.status is AccountStatus.MERGED:
        return child  # handed over already: a second call must not lose what is in flight
    if child.lifecycle.merging_into is None:
        raise Conflict(f"{child.account_id} is not merging", field="merging_into")
    if not is_flat(child):
        raise Conflict(f"{child.account_id} still holds positions; it merges once liquidated", field="positions")
    amount = child.cash_cents
    sleeves = {k: replace(s, cash_cents=0, buffer_cents=0, contributed_cents=0) for k, s in child.sleeves.items()}
    state = replace(child.lifecycle, merged_out_cents=amount)
    return replace(child, sleeves=sleeves, lifecycle=state, status=AccountStatus.MERGED)


def receive_merge(target: Account, child: Account, *, buffer_pct: Decimal) -> Account:
    """The merged cash joins the target's Com-Acc (A10) exactly once."""
    if child.account_id in target.lifecycle.merges_received:
        return target
    if child.lifecycle.merging_into != target.account_id or child.lifecycle.merged_out_cents is None:
        raise Conflict(f"{child.account_id} has not merged into {target.account_id}", field="child")
    amount = child.lifecycle.merged_out_cents
    com = target.sleeve(SleeveKind.COM)
    com = replace(
        com,
        cash_cents=com.cash_cents + amount,
        buffer_cents=com.buffer_cents + fraction_of(amount, buffer_pct),
        contributed_cents=com.contributed_cents + amount,
    )
    state = replace(target.lifecycle, merges_received=(*target.lifecycle.merges_received, child.account_id))
    return replace(target, sleeves={**target.sleeves, SleeveKind.COM: com}, lifecycle=state)


def merge_movement(target: Account, child: Account, at: datetime) -> CashMovement:
    """The cash movement that records a merge on the receiving account."""
    amount = child.lifecycle.merged_out_cents or 0
    return CashMovement(
        target.account_id,
        target.movements + 1,
        MovementKind.DEPOSIT,
        amount,
        {SleeveKind.COM: amount},
        at,
        f"merge of {child.account_id}",
    )


# --- conservation ---------------------------------------------------------------------------------------


def money_in_system(accounts: Iterable[Account]) -> int:
    """All cash across accounts, each cent once: an unconfirmed child's cash is its parent's earmark,
    and a merged child's cash counts until its target has booked it."""
    accounts = list(accounts)
    by_id = {a.account_id: a for a in accounts}
    total = 0
    for account in accounts:
        if account.lifecycle.funding_from is None:
            total += account.cash_cents
        total += sum(account.lifecycle.earmarks.values())
        merged = account.lifecycle.merged_out_cents
        target = by_id.get(account.lifecycle.merging_into or "")
        if merged is not None and (target is None or account.account_id not in target.lifecycle.merges_received):
            total += merged
    return total


# --- quarterly reinvestment (A11) ------------------------------------------------------------------------

REINVESTING_SLEEVES = (SleeveKind.REV, SleeveKind.COM)  # Gen-Acc compounds weekly: nothing to do (A11)
REINVEST_PURPOSE = "RINV"  # the purpose part of a reinvestment purchase's intent id (four characters)


@dataclass(frozen=True)
class ReinvestBudget:
    """Cash one sleeve puts into one purchase this quarter."""

    sleeve: SleeveKind
    kind: str  # "shares" or "leaps"
    ticker: str
    budget_cents: int


def reinvest_due(on: date, account: Account, *, first_of_month: bool, config: LifecycleConfig) -> bool:
    """The first session of a reinvestment month, once (A11)."""
    return first_of_month and on.month in config.reinvest_months and account.lifecycle.reinvested_on != on


def net_income_cents(account: Account, sleeve: SleeveKind) -> int:
    balance = account.sleeve(sleeve)
    return balance.realized_cents - balance.commission_cents


def reinvest_budgets(account: Account, config: AllUseConfig, on: date) -> list[ReinvestBudget]:
    """The quarter's net income since the last reinvestment, after estimated tax when the basis is
    post-tax, split as A11 says (Rev: 75 % stays wheel capital, 25 % LEAPS calls; Com: 75 % shares,
    25 % LEAPS); shares over the sleeve's tickers by their weights, LEAPS on one ticker, in turn. Never
    more than the sleeve's free cash: `insufficient_funds_policy` scales the purchases down together, or
    skips the sleeve."""
    rules = config.lifecycle
    budgets: list[ReinvestBudget] = []
    for sleeve in REINVESTING_SLEEVES:
        net = net_income_cents(account, sleeve) - account.lifecycle.reinvest_base_cents.get(sleeve, 0)
        if rules.reinvest_basis == "post_tax":
            net -= estimated_tax_cents(net, config)
        if net <= 0:
            continue
        split = (
            {"leaps": rules.rev_reinvest.leaps}
            if sleeve is SleeveKind.REV
            else {"shares": rules.com_reinvest.shares, "leaps": rules.com_reinvest.leaps}
        )
        strategy = config.rev if sleeve is SleeveKind.REV else config.com
        wanted = [
            ReinvestBudget(sleeve, "shares", ticker, int(net * split["shares"] * strategy.weight_of(ticker)))
            for ticker in strategy.tickers
            if "shares" in split
        ]
        # A LEAPS contract costs thousands: the sleeve's LEAPS money buys on one ticker, in turn by quarter.
        turn = strategy.tickers[(on.year * 4 + (on.month - 1) // 3) % len(strategy.tickers)]
        wanted.append(ReinvestBudget(sleeve, "leaps", turn, int(net * split["leaps"])))
        free = account.sleeve(sleeve).free_cents
        total = sum(b.budget_cents for b in wanted)
        if total > free:
            if rules.insufficient_funds_policy == "skip":
                continue
            wanted = [replace(b, budget_cents=b.budget_cents * max(free, 0) // total) for b in wanted]
        budgets += [b for b in wanted if b.budget_cents > 0]
    return budgets


def mark_reinvested(account: Account, on: date) -> Account:
    """The quarter is done: the next one counts its net income from here."""
    base = {k: net_income_cents(account, k) for k in REINVESTING_SLEEVES}
    return replace(account, lifecycle=replace(account.lifecycle, reinvested_on=on, reinvest_base_cents=base))


def leaps_row(chain: OptionChain, today: date, config: LifecycleConfig) -> int | None:
    """The LEAPS call to buy (A11): `leaps_months_min`–`leaps_months_max` out, |Δ| in `leaps_delta`, an ask to
    pay; the delta nearest the band's middle, then the nearer expiry."""
    low, high = float(config.leaps_delta.min), float(config.leaps_delta.max)
    first, last = _months_after(today, config.leaps_months_min), _months_after(today, config.leaps_months_max)
    days = chain.expiry.astype("datetime64[D]")
    mask = (
        chain.is_call
        & (days >= np.datetime64(first, "D"))
        & (days <= np.datetime64(last, "D"))
        & (np.abs(chain.delta) >= low)
        & (np.abs(chain.delta) <= high)
        & (chain.ask_cents > 0)
    )
    rows = np.flatnonzero(mask)
    if not rows.size:
        return None
    middle = (low + high) / 2
    best = min(rows.tolist(), key=lambda r: (abs(abs(float(chain.delta[r])) - middle), days[r]))
    return int(best)


def affordable_units(budget_cents: int, price_cents: int, multiplier: int) -> int:
    """Whole shares or contracts a budget buys at a price (never a fraction, never more than the budget)."""
    if price_cents <= 0:
        raise ValidationFailed(f"price must be positive (got {price_cents})", field="price_cents")
    return budget_cents // (price_cents * multiplier)


def _months_after(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it is shorter."""
    years, index = divmod(day.month - 1 + months, 12)
    year, month = day.year + years, index + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
