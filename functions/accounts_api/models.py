"""Request and response bodies of the admin accounts API.

Money crosses the wire as text: requests give dollars as decimal strings ("250000.00"), responses give
integer cents plus the formatted amount. JSON numbers are never money here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alluse.domain.accounts import Account, AccountStatus, CashMovement
from alluse.domain.audit import ChainReport
from alluse.domain.config_versions import ConfigVersion
from alluse.domain.money import format_cents
from alluse.domain.sleeves import SLEEVE_ORDER, SleeveKind

_DOLLARS = Field(description="Dollars as a decimal string, at most 2 decimal places.", examples=["250000.00"])


class _Request(BaseModel):
    """Unknown fields are refused, so a misspelt field is reported by name instead of being ignored."""

    model_config = ConfigDict(extra="forbid")


class CreateAccountRequest(_Request):
    capital: str = _DOLLARS
    name: str = ""
    brokerage_id: str | None = None
    account_id: str | None = None
    overrides: dict[str, Any] | None = Field(default=None, description="Initial per-account configuration layer.")


class BrokerLinkRequest(_Request):
    brokerage_id: str


class CashMovementRequest(_Request):
    amount: str = _DOLLARS
    reason: str = ""


class StatusChangeRequest(_Request):
    status: AccountStatus
    reason: str


class ConfigChangeRequest(_Request):
    changes: dict[str, Any] = Field(description='Nested settings, e.g. {"gen": {"delta_band": {"min": "0.42"}}}.')
    reason: str


class Money(BaseModel):
    cents: int
    formatted: str

    @classmethod
    def of(cls, cents: int) -> Money:
        return cls(cents=cents, formatted=format_cents(cents))


class SleeveOut(BaseModel):
    kind: SleeveKind
    label: str
    cash: Money
    buffer: Money
    free: Money
    contributed: Money


class AccountOut(BaseModel):
    account_id: str
    name: str
    status: AccountStatus
    brokerage_id: str | None
    parent_id: str | None
    created_at: datetime
    cash: Money
    buffer: Money
    free: Money
    sleeves: dict[SleeveKind, SleeveOut]

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            account_id=account.account_id,
            name=account.name,
            status=account.status,
            brokerage_id=account.brokerage_id,
            parent_id=account.parent_id,
            created_at=account.created_at,
            cash=Money.of(account.cash_cents),
            buffer=Money.of(account.buffer_cents),
            free=Money.of(account.free_cents),
            sleeves={kind: _sleeve(account, kind) for kind in SLEEVE_ORDER if kind in account.sleeves},
        )


def _sleeve(account: Account, kind: SleeveKind) -> SleeveOut:
    sleeve = account.sleeve(kind)
    return SleeveOut(
        kind=kind,
        label=kind.label,
        cash=Money.of(sleeve.cash_cents),
        buffer=Money.of(sleeve.buffer_cents),
        free=Money.of(sleeve.free_cents),
        contributed=Money.of(sleeve.contributed_cents),
    )


class AccountList(BaseModel):
    accounts: list[AccountOut]


class MovementOut(BaseModel):
    movement_id: str
    kind: str
    amount: Money
    by_sleeve: dict[SleeveKind, Money]
    at: datetime
    reason: str

    @classmethod
    def of(cls, movement: CashMovement) -> MovementOut:
        return cls(
            movement_id=movement.movement_id,
            kind=movement.kind.value,
            amount=Money.of(movement.amount_cents),
            by_sleeve={kind: Money.of(cents) for kind, cents in movement.by_sleeve.items()},
            at=movement.at,
            reason=movement.reason,
        )


class AccountDetail(AccountOut):
    movements: list[MovementOut]

    @classmethod
    def of_history(cls, account: Account, movements: list[CashMovement]) -> AccountDetail:
        return cls(**dict(AccountOut.of(account)), movements=[MovementOut.of(m) for m in movements])


class ConfigVersionOut(BaseModel):
    scope: str
    version: int
    author: str
    reason: str
    at: datetime
    changes: dict[str, Any]
    overrides: dict[str, Any]

    @classmethod
    def of(cls, version: ConfigVersion) -> ConfigVersionOut:
        return cls(
            scope=version.scope,
            version=version.version,
            author=version.author,
            reason=version.reason,
            at=version.at,
            changes=dict(version.changes),
            overrides=dict(version.overrides),
        )


class ChainReportOut(BaseModel):
    scope: str
    ok: bool
    checked: int
    first_broken_seq: int | None
    problem: str | None

    @classmethod
    def of(cls, report: ChainReport) -> ChainReportOut:
        return cls(
            scope=report.scope,
            ok=report.ok,
            checked=report.checked,
            first_broken_seq=report.first_broken_seq,
            problem=report.problem,
        )


class ErrorBody(BaseModel):
    error: str
    field: str | None = None
    message: str
    problems: list[str]
    correlation_id: str | None = None
