"""pynamodb item models of the single table (layout in `table.py`)."""

from __future__ import annotations

import os
from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from alluse.adapters.dynamo.table import TABLE, table_name

ACCOUNTS_INDEX_KEY = "ACCOUNT"
GLOBAL_PK = "GLOBAL"


def account_pk(account_id: str) -> str:
    return f"ACCOUNT#{account_id}"


def scope_pk(scope: str) -> str:
    """Partition of an audit/config scope: an account, or the global settings."""
    return GLOBAL_PK if scope == GLOBAL_PK else account_pk(scope)


def seq_sk(prefix: str, seq: int) -> str:
    return f"{prefix}#{seq:010d}"


class _Meta:
    table_name = table_name()
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


class AccountsIndex(GlobalSecondaryIndex["AccountItem"]):
    class Meta:
        index_name = TABLE.accounts_index.name
        projection = AllProjection()

    accounts_pk = UnicodeAttribute(hash_key=True)
    accounts_sk = UnicodeAttribute(range_key=True)


class AccountItem(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default="ACCOUNT")
    accounts_pk = UnicodeAttribute(default=ACCOUNTS_INDEX_KEY)
    accounts_sk = UnicodeAttribute()
    name = UnicodeAttribute()
    status = UnicodeAttribute()
    brokerage_id = UnicodeAttribute(null=True)
    parent_id = UnicodeAttribute(null=True)
    lineage_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    sleeves = JSONAttribute()  # {kind: {cash_cents, buffer_cents, contributed_cents}} as ints
    movements = NumberAttribute(default=0)
    executions_booked = NumberAttribute(default=0)
    settlements_booked = NumberAttribute(default=0)
    audit_seq = NumberAttribute(default=0)
    audit_hash = UnicodeAttribute()
    protocol = JSONAttribute(null=True)  # ProtocolState: ATR watches, pauses, breaker inputs (ints, ISO dates)
    lifecycle = JSONAttribute(null=True)  # LifecycleState: earmarks, pending funding, merges (ints, ids)
    tax = JSONAttribute(null=True)  # FIFO tax lots and realised gains by year and term (ints, ISO dates)
    version = VersionAttribute()

    accounts_index = AccountsIndex()


class GlobalItem(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True, default=GLOBAL_PK)
    sk = UnicodeAttribute(range_key=True, default=GLOBAL_PK)
    audit_seq = NumberAttribute(default=0)
    audit_hash = UnicodeAttribute()
    config_version = NumberAttribute(default=0)
    version = VersionAttribute()


class CashMovementItem(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    seq = NumberAttribute()
    movement_id = UnicodeAttribute()  # for people reading the table; derived from account and seq
    kind = UnicodeAttribute()
    amount_cents = NumberAttribute()
    by_sleeve = JSONAttribute()
    at = UnicodeAttribute()
    reason = UnicodeAttribute(default="")


class ConfigVersionItem(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    config_version = NumberAttribute()
    overrides = JSONAttribute()  # the whole override layer of this scope after the change
    changes = JSONAttribute()  # just what this version changed
    author = UnicodeAttribute()
    reason = UnicodeAttribute()
    at = UnicodeAttribute()


class OrderItem(Model):
    """One version of one order intent (domain ManagedOrder), under its account."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # ORDER#<intent id>
    state = UnicodeAttribute()
    order = JSONAttribute()


class AuditItem(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    seq = NumberAttribute()
    at = UnicodeAttribute()
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    details = JSONAttribute()
    prev_hash = UnicodeAttribute()
    hash = UnicodeAttribute()


class BrokerClaimItem(Model):
    """Exists once per brokerage id, forever: the store's guarantee of A1's one-to-one mapping."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default="BROKER")
    account_id = UnicodeAttribute()
    claimed_at = UnicodeAttribute()

    @staticmethod
    def key(brokerage_id: str) -> str:
        return f"BROKER#{brokerage_id}"


class SequenceItem(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True, default="SEQUENCE")
    sk = UnicodeAttribute(range_key=True)
    value = NumberAttribute(default=0)


ALL_MODELS: tuple[type[Model], ...] = (
    AccountItem,
    GlobalItem,
    CashMovementItem,
    ConfigVersionItem,
    AuditItem,
    OrderItem,
    BrokerClaimItem,
    SequenceItem,
)


def configure(table: str | None = None, region: str | None = None) -> None:
    """Point every model at a table/region chosen at run time (tests, local runtime, Lambda env).

    The models share one table, so they share one connection (one botocore client): building a
    client per model costs more than the requests a Lambda invocation makes.
    """
    meta: Any = _Meta
    if table:
        meta.table_name = table
    if region:
        meta.region = region
    for model in ALL_MODELS:
        model._connection = None
    shared = AccountItem._get_connection()
    for model in ALL_MODELS:
        model._connection = shared


def disconnect() -> None:
    """Drop the shared connection (the local runtime, when its emulator stops)."""
    for model in ALL_MODELS:
        model._connection = None
