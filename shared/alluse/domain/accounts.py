"""Main accounts, their sleeves, cash movements and status lifecycle (domain-spec A1, A2).

Pure functions of their inputs: each operation returns the new account state and what happened
(a `CashMovement`), and never mutates its arguments. Persistence and audit are the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from alluse.domain.errors import Conflict, IllegalTransition, InsufficientFunds, ValidationFailed
from alluse.domain.instruments import Instrument, OptionContract, OptionRight
from alluse.domain.money import format_cents, fraction_of, require_positive, split_by_weights
from alluse.domain.sleeves import SLEEVE_ORDER, SleeveKind
from alluse.domain.tax import TaxLedger


class AccountStatus(StrEnum):
    PENDING_BROKER_LINK = "PENDING_BROKER_LINK"  # created, waiting for its one brokerage account
    ACTIVE = "ACTIVE"
    SAFE = "SAFE"  # no new risk, exits allowed (circuit breaker)
    HALTED = "HALTED"  # kill switch: nothing trades, working orders cancelled
    MERGED = "MERGED"  # folded into an ancestor's Com-Acc; terminal
    CLOSED = "CLOSED"  # terminal


_LEGAL: dict[AccountStatus, frozenset[AccountStatus]] = {
    AccountStatus.PENDING_BROKER_LINK: frozenset({AccountStatus.ACTIVE, AccountStatus.CLOSED}),
    AccountStatus.ACTIVE: frozenset(
        {AccountStatus.SAFE, AccountStatus.HALTED, AccountStatus.MERGED, AccountStatus.CLOSED}
    ),
    AccountStatus.SAFE: frozenset(
        {AccountStatus.ACTIVE, AccountStatus.HALTED, AccountStatus.MERGED, AccountStatus.CLOSED}
    ),
    AccountStatus.HALTED: frozenset(
        {AccountStatus.ACTIVE, AccountStatus.SAFE, AccountStatus.MERGED, AccountStatus.CLOSED}
    ),
    AccountStatus.MERGED: frozenset(),
    AccountStatus.CLOSED: frozenset(),
}

# Statuses in which money may move in or out of the account.
_FUNDABLE = frozenset(
    {AccountStatus.PENDING_BROKER_LINK, AccountStatus.ACTIVE, AccountStatus.SAFE, AccountStatus.HALTED}
)


def legal_next_statuses(status: AccountStatus) -> frozenset[AccountStatus]:
    return _LEGAL[status]


class MovementKind(StrEnum):
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"


@dataclass(frozen=True)
class SleeveBalance:
    """A sleeve's sub-ledger (A2): its cash, buffer and positions inside the one brokerage account.

    The buffer is part of the cash and is never deployed; cash securing short puts is not free either.
    Bookings (fills, expiries) are `alluse.domain.ledger`'s.
    """

    kind: SleeveKind
    cash_cents: int = 0
    buffer_cents: int = 0
    contributed_cents: int = 0  # net capital put into this sleeve (deposits - withdrawals)
    positions: Mapping[Instrument, int] = field(default_factory=dict)  # signed: negative = short
    costs: Mapping[Instrument, int] = field(default_factory=dict)  # signed cents paid for what is still open
    realized_cents: int = 0  # realised P&L before commissions (average cost; tax lots are FIFO elsewhere)
    premium_cents: int = 0  # gross premium received for options sold to open
    commission_cents: int = 0

    @property
    def collateral_cents(self) -> int:
        """Cash securing the sleeve's short puts (strike × 100 × contracts)."""
        return sum(
            i.strike_cents * i.multiplier * -q
            for i, q in self.positions.items()
            if isinstance(i, OptionContract) and i.right is OptionRight.PUT and q < 0
        )

    @property
    def free_cents(self) -> int:
        return self.cash_cents - self.buffer_cents - self.collateral_cents

    def quantity(self, instrument: Instrument) -> int:
        return self.positions.get(instrument, 0)


@dataclass(frozen=True)
class CashMovement:
    account_id: str
    seq: int  # 1, 2, 3, ... per account
    kind: MovementKind
    amount_cents: int
    by_sleeve: Mapping[SleeveKind, int]
    at: datetime
    reason: str

    @property
    def movement_id(self) -> str:
        return f"{self.account_id}-CM{self.seq:06d}"


@dataclass(frozen=True)
class ChainHead:
    """Last link of an account's audit chain, kept on the account record."""

    seq: int = 0
    hash: str = "0" * 64


@dataclass(frozen=True)
class Watch:
    """One short option under the ATR protocol: where its underlying stood at entry, its last level."""

    entry_underlying_cents: int
    level: int = 0  # an atr_protocol.AtrLevel (0-3)


@dataclass(frozen=True)
class ProtocolState:
    """What the protocol remembers of an account between scans (A5, A6); rules in `domain.protection`."""

    watches: Mapping[str, Watch] = field(default_factory=dict)  # by protection.watch_key(sleeve, contract)
    paused_until: Mapping[SleeveKind, date] = field(default_factory=dict)  # ATR L3: no entries before
    trade_pnls_cents: tuple[int, ...] = ()  # latest closed trades' realised P&L, oldest first
    closing_pnls_cents: Mapping[str, int] = field(default_factory=dict)  # P&L so far of positions closing in parts
    day: date | None = None  # the session day_start_equity_cents belongs to
    day_start_equity_cents: int | None = None
    safe_until: date | None = None  # a breaker's SAFE lifts on this day; None = an operator lifts it


@dataclass(frozen=True)
class LifecycleState:
    """Forks and merges in progress (A9, A10); the rules are `domain.lifecycle`'s.

    Money moving between accounts is always counted exactly once: in the parent's `earmarks` until the
    child's funding is confirmed (the child waits with `funding_from` set), and in a merged child's
    `merged_out_cents` until the receiving account lists the child in `merges_received`."""

    earmarks: Mapping[str, int] = field(default_factory=dict)  # child id -> cents set aside for it
    forks_made: int = 0  # children this account has forked (names the next one)
    funding_from: str | None = None  # a child whose transfer from this parent is not confirmed yet
    merging_into: str | None = None  # liquidating before merging into this account
    merged_out_cents: int | None = None  # cash handed to `merging_into` when the merge completed
    merges_received: tuple[str, ...] = ()  # merged children whose cash this account has booked
    forked_cents: Mapping[SleeveKind, int] = field(default_factory=dict)  # surplus forked out so far, by sleeve
    reinvested_on: date | None = None  # the last quarterly reinvestment (A11)
    reinvest_base_cents: Mapping[SleeveKind, int] = field(default_factory=dict)  # net income then, per sleeve


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str
    status: AccountStatus
    sleeves: Mapping[SleeveKind, SleeveBalance]
    created_at: datetime
    brokerage_id: str | None = None
    parent_id: str | None = None
    lineage_id: str | None = None
    movements: int = 0  # count of cash movements, for deterministic movement ids
    executions_booked: int = 0  # broker executions of this account booked into sleeves (append-only list)
    settlements_booked: int = 0  # broker expiry settlements booked into sleeves
    audit_head: ChainHead = field(default_factory=ChainHead)
    protocol: ProtocolState = field(default_factory=ProtocolState)
    lifecycle: LifecycleState = field(default_factory=LifecycleState)
    tax_lots: TaxLedger = field(default_factory=TaxLedger)  # FIFO lots per sleeve (A12)
    tax_gains_cents: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # year -> (short, long) realised
    version: int | None = None  # optimistic-lock token owned by the store; None = never stored

    @property
    def cash_cents(self) -> int:
        return sum(s.cash_cents for s in self.sleeves.values())

    @property
    def buffer_cents(self) -> int:
        return sum(s.buffer_cents for s in self.sleeves.values())

    @property
    def free_cents(self) -> int:
        return sum(s.free_cents for s in self.sleeves.values())

    def sleeve(self, kind: SleeveKind) -> SleeveBalance:
        return self.sleeves[kind]


def validate_account_id(account_id: str) -> str:
    if not re.fullmatch(r"[A-Z0-9][A-Z0-9-]{2,39}", account_id):
        raise ValidationFailed(
            f"'{account_id}' is not a valid account id (3-40 characters: A-Z, 0-9 and '-')", field="account_id"
        )
    return account_id


def open_account(
    account_id: str,
    *,
    name: str,
    capital_cents: int,
    weights: Mapping[SleeveKind, Decimal],
    buffer_pct: Decimal,
    now: datetime,
    parent_id: str | None = None,
    lineage_id: str | None = None,
) -> tuple[Account, CashMovement]:
    """A new main account, waiting for its brokerage link, funded with its initial capital."""
    validate_account_id(account_id)
    require_positive(capital_cents, field="capital")
    empty = Account(
        account_id=account_id,
        name=name.strip() or account_id,
        status=AccountStatus.PENDING_BROKER_LINK,
        sleeves={k: SleeveBalance(kind=k) for k in SLEEVE_ORDER},
        created_at=now,
        parent_id=parent_id,
        lineage_id=lineage_id or account_id,
    )
    return deposit(empty, capital_cents, weights=weights, buffer_pct=buffer_pct, now=now, reason="initial capital")


def deposit(
    account: Account,
    amount_cents: int,
    *,
    weights: Mapping[SleeveKind, Decimal],
    buffer_pct: Decimal,
    now: datetime,
    reason: str = "",
) -> tuple[Account, CashMovement]:
    """Split a deposit across the sleeves by target weight; each sleeve's buffer grows by its share."""
    _require_fundable(account, "deposit")
    require_positive(amount_cents, field="amount")
    parts = split_by_weights(amount_cents, weights, SLEEVE_ORDER)
    sleeves = {
        k: replace(
            s,
            cash_cents=s.cash_cents + parts[k],
            buffer_cents=s.buffer_cents + fraction_of(parts[k], buffer_pct),
            contributed_cents=s.contributed_cents + parts[k],
        )
        for k, s in account.sleeves.items()
    }
    return _record(account, sleeves, MovementKind.DEPOSIT, amount_cents, parts, now, reason)


def withdraw(
    account: Account,
    amount_cents: int,
    *,
    weights: Mapping[SleeveKind, Decimal],
    now: datetime,
    reason: str = "",
) -> tuple[Account, CashMovement]:
    """Take a withdrawal from the sleeves' free cash by target weight; buffers are never touched."""
    _require_fundable(account, "withdraw from")
    require_positive(amount_cents, field="amount")
    free = {k: s.free_cents for k, s in account.sleeves.items()}
    if amount_cents > sum(free.values()):
        raise InsufficientFunds(
            f"withdrawal of {format_cents(amount_cents)} exceeds free cash of {format_cents(sum(free.values()))}"
            f" (buffers of {format_cents(account.buffer_cents)} are never withdrawn)",
            field="amount",
        )
    parts = split_capped(amount_cents, weights, free)
    sleeves = {
        k: replace(
            s,
            cash_cents=s.cash_cents - parts[k],
            contributed_cents=s.contributed_cents - parts[k],
        )
        for k, s in account.sleeves.items()
    }
    return _record(account, sleeves, MovementKind.WITHDRAWAL, amount_cents, parts, now, reason)


def split_capped(
    amount: int, weights: Mapping[SleeveKind, Decimal], caps: Mapping[SleeveKind, int]
) -> dict[SleeveKind, int]:
    """Split by weights, no sleeve above its cap; what a capped sleeve can't take goes to the others.

    Sleeves without weight only contribute once the weighted ones are exhausted.
    """
    taken = {k: 0 for k in SLEEVE_ORDER}
    remaining = amount
    while remaining > 0:
        open_keys = tuple(k for k in SLEEVE_ORDER if caps.get(k, 0) - taken[k] > 0)
        if not open_keys:
            raise InsufficientFunds(f"{format_cents(remaining)} could not be placed", field="amount")
        share = {k: weights.get(k, Decimal(0)) for k in open_keys}
        if sum(share.values()) <= 0:
            share = {k: Decimal(caps[k] - taken[k]) for k in open_keys}
        for k, part in split_by_weights(remaining, share, open_keys).items():
            take = min(part, caps[k] - taken[k])
            taken[k] += take
            remaining -= take
    return taken


def validate_brokerage_id(brokerage_id: str, *, pattern: str) -> str:
    if not re.fullmatch(pattern, brokerage_id):
        raise ValidationFailed(
            f"'{brokerage_id}' is not a brokerage account id (expected pattern {pattern})", field="brokerage_id"
        )
    return brokerage_id


def brokerage_id_taken(brokerage_id: str, owner: str | None) -> Conflict:
    return Conflict(
        f"brokerage account {brokerage_id} is already linked to {owner or 'another account'};"
        " a brokerage account belongs to exactly one main account (A1)",
        field="brokerage_id",
    )


def link_broker(account: Account, brokerage_id: str, *, pattern: str) -> Account:
    """Tie the account to its one brokerage account (A1) and make it ACTIVE."""
    validate_brokerage_id(brokerage_id, pattern=pattern)
    if account.brokerage_id is not None:
        raise Conflict(
            f"account {account.account_id} is already linked to {account.brokerage_id};"
            " a main account has exactly one brokerage account",
            field="brokerage_id",
        )
    linked = replace(account, brokerage_id=brokerage_id)
    return change_status(linked, AccountStatus.ACTIVE)


def change_status(account: Account, to: AccountStatus) -> Account:
    if to == account.status:
        raise IllegalTransition(f"account {account.account_id} is already {to.value}", field="status")
    if to not in _LEGAL[account.status]:
        allowed = ", ".join(sorted(s.value for s in _LEGAL[account.status])) or "none (terminal status)"
        raise IllegalTransition(
            f"{account.account_id} cannot go from {account.status.value} to {to.value}; allowed: {allowed}",
            field="status",
        )
    if to == AccountStatus.ACTIVE and account.brokerage_id is None:
        raise IllegalTransition(
            f"{account.account_id} has no brokerage account linked; link one before it can be ACTIVE", field="status"
        )
    return replace(account, status=to)


def _require_fundable(account: Account, verb: str) -> None:
    if account.status not in _FUNDABLE:
        raise IllegalTransition(
            f"cannot {verb} account {account.account_id}: it is {account.status.value}", field="status"
        )
    if account.lifecycle.funding_from is not None:  # its cash must stay what the parent's earmark says (A9)
        raise IllegalTransition(
            f"cannot {verb} account {account.account_id}: it waits for its fork's funding from"
            f" {account.lifecycle.funding_from}",
            field="status",
        )


def _record(
    account: Account,
    sleeves: Mapping[SleeveKind, SleeveBalance],
    kind: MovementKind,
    amount_cents: int,
    parts: Mapping[SleeveKind, int],
    now: datetime,
    reason: str,
) -> tuple[Account, CashMovement]:
    seq = account.movements + 1
    movement = CashMovement(
        account_id=account.account_id,
        seq=seq,
        kind=kind,
        amount_cents=amount_cents,
        by_sleeve=dict(parts),
        at=now,
        reason=reason,
    )
    return replace(account, sleeves=dict(sleeves), movements=seq), movement
