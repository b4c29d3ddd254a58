"""Shared fixtures: an embedded platform (moto underneath) per test, a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.local.runtime import LocalRuntime
from alluse.application.accounts import AccountService, NewAccount
from alluse.application.audit import AuditService
from alluse.application.clock import SimulatedClock
from alluse.application.configuration import ConfigurationService

DOLLAR = 100


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(datetime(2026, 11, 23, 14, 30, tzinfo=UTC))


@pytest.fixture
def runtime() -> Iterator[LocalRuntime]:
    with LocalRuntime(None) as rt:
        yield rt


@pytest.fixture
def store(runtime: LocalRuntime) -> DynamoAccountStore:
    return runtime.store


@pytest.fixture
def accounts(store: DynamoAccountStore, clock: SimulatedClock) -> AccountService:
    return AccountService(store, clock)


@pytest.fixture
def configuration(store: DynamoAccountStore, clock: SimulatedClock) -> ConfigurationService:
    return ConfigurationService(store, clock)


@pytest.fixture
def audit(store: DynamoAccountStore) -> AuditService:
    return AuditService(store)


def new_account(capital_dollars: int = 500_000, **kwargs: object) -> NewAccount:
    return NewAccount(capital_cents=capital_dollars * DOLLAR, **kwargs)  # type: ignore[arg-type]
