"""Ports the use cases are written against; adapters (DynamoDB, in-memory, …) implement them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from alluse.domain.accounts import Account, CashMovement, ChainHead
from alluse.domain.alerts import Alert
from alluse.domain.audit import AuditRecord
from alluse.domain.config_versions import ConfigVersion
from alluse.domain.orders import ManagedOrder


@dataclass(frozen=True)
class AccountChange:
    """Everything one use case changes in one account, written atomically or not at all.

    `account.version` is the version read (None for a new account): a concurrent writer makes
    the commit fail with `Conflict` instead of overwriting.
    """

    account: Account
    audit: Sequence[AuditRecord]
    movements: Sequence[CashMovement] = ()
    config: ConfigVersion | None = None
    claim_brokerage_id: str | None = None
    orders: Sequence[ManagedOrder] = ()  # order versions to store (created or changed)


@dataclass(frozen=True)
class GlobalState:
    audit_head: ChainHead = field(default_factory=ChainHead)
    config_version: int = 0
    version: int | None = None


@dataclass(frozen=True)
class GlobalChange:
    state: GlobalState  # the new state; `version` is the one read
    audit: Sequence[AuditRecord]
    config: ConfigVersion


class AccountStore(Protocol):
    def next_account_number(self) -> int: ...

    def get(self, account_id: str) -> Account: ...

    def list_accounts(self) -> Iterator[Account]: ...

    def commit(self, change: AccountChange) -> Account: ...

    def commit_together(self, changes: Sequence[AccountChange]) -> list[Account]:
        """All of these accounts' changes in one transaction, or none."""
        ...

    def movements(self, account_id: str) -> list[CashMovement]: ...

    def orders(self, account_id: str) -> list[ManagedOrder]: ...

    def brokerage_owner(self, brokerage_id: str) -> str | None: ...

    def global_state(self) -> GlobalState: ...

    def commit_global(self, change: GlobalChange) -> GlobalState: ...

    def latest_config(self, scope: str) -> ConfigVersion | None: ...

    def config_history(self, scope: str) -> list[ConfigVersion]: ...

    def audit_records(self, scope: str) -> list[AuditRecord]: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class Notifier(Protocol):
    """Delivers an alert the alert gate let through (local: log + file; AWS: SNS by priority)."""

    def deliver(self, alert: Alert) -> None: ...
