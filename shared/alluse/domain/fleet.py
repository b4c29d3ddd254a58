"""Aggregates across independent accounts (read-only views; no account depends on another)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alluse.domain.accounts import Account, AccountStatus, SleeveBalance
from alluse.domain.sleeves import SLEEVE_ORDER, SleeveKind


@dataclass(frozen=True)
class FleetAllocation:
    accounts: int
    by_status: Mapping[AccountStatus, int]
    by_sleeve: Mapping[SleeveKind, SleeveBalance]  # sums over every account's sleeve of that kind

    @property
    def cash_cents(self) -> int:
        return sum(s.cash_cents for s in self.by_sleeve.values())

    @property
    def buffer_cents(self) -> int:
        return sum(s.buffer_cents for s in self.by_sleeve.values())

    @property
    def free_cents(self) -> int:
        return sum(s.free_cents for s in self.by_sleeve.values())


def summarize(accounts: Iterable[Account]) -> FleetAllocation:
    totals = {k: [0, 0, 0] for k in SLEEVE_ORDER}
    statuses: Counter[AccountStatus] = Counter()
    count = 0
    for account in accounts:
        count += 1
        statuses[account.status] += 1
        for kind, sleeve in account.sleeves.items():
            t = totals[kind]
            t[0] += sleeve.cash_cents
            t[1] += sleeve.buffer_cents
            t[2] += sleeve.contributed_cents
    by_sleeve = {
        k: SleeveBalance(kind=k, cash_cents=c, buffer_cents=b, contributed_cents=n) for k, (c, b, n) in totals.items()
    }
    return FleetAllocation(accounts=count, by_status=dict(statuses), by_sleeve=by_sleeve)
