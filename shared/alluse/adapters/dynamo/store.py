"""DynamoDB implementation of `AccountStore` (pynamodb); every change is one transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from alluse.adapters.dynamo.models import (
    ACCOUNTS_INDEX_KEY,
    GLOBAL_PK,
    AccountItem,
    AuditItem,
    BrokerClaimItem,
    CashMovementItem,
    ConfigVersionItem,
    GlobalItem,
    OrderItem,
    SequenceItem,
    account_pk,
    scope_pk,
    seq_sk,
)
from alluse.adapters.dynamo.order_codec import order_from_json, order_to_json
from alluse.application.ports import AccountChange, GlobalChange, GlobalState
from alluse.domain.accounts import (
    Account,
    AccountStatus,
    CashMovement,
    ChainHead,
    LifecycleState,
    MovementKind,
    ProtocolState,
    SleeveBalance,
    Watch,
    brokerage_id_taken,
)
from alluse.domain.audit import AuditRecord
from alluse.domain.config_versions import ConfigVersion
from alluse.domain.errors import Conflict, NotFound
from alluse.domain.instruments import instrument_from_symbol
from alluse.domain.orders import ManagedOrder
from alluse.domain.sleeves import SleeveKind
from alluse.domain.tax import TaxLedger


class DynamoAccountStore:
    def next_account_number(self) -> int:
        item = SequenceItem(sk="ACCOUNT")
        item.update(actions=[SequenceItem.value.add(1)])
        return int(item.value)

    def get(self, account_id: str) -> Account:
        try:
            return _account_from_item(AccountItem.get(account_pk(account_id), "ACCOUNT", consistent_read=True))
        except DoesNotExist:
            raise NotFound(f"no account '{account_id}'", field="account_id") from None

    def list_accounts(self) -> Iterator[Account]:
        for item in AccountItem.accounts_index.query(ACCOUNTS_INDEX_KEY):
            yield _account_from_item(item)

    def commit(self, change: AccountChange) -> Account:
        return self.commit_together([change])[0]

    def commit_together(self, changes: Sequence[AccountChange]) -> list[Account]:
        """Several accounts' changes in ONE transaction: all are written or none (a fork's earmark and
        its child, a merge's two sides). Each account is guarded by its own version."""
        labels: list[str] = []
        scope = " and ".join(c.account.account_id for c in changes)
        with _transaction(labels, scope) as tw:
            for change in changes:
                _add(tw, change, labels)
        return [_with_version(c.account, (c.account.version or 0) + 1) for c in changes]

    def orders(self, account_id: str) -> list[ManagedOrder]:
        items = OrderItem.query(account_pk(account_id), OrderItem.sk.startswith("ORDER#"), consistent_read=True)
        return [order_from_json(i.order) for i in items]

    def movements(self, account_id: str) -> list[CashMovement]:
        items = CashMovementItem.query(account_pk(account_id), CashMovementItem.sk.startswith("CASH#"))
        return [_movement_from_item(account_id, i) for i in items]

    def brokerage_owner(self, brokerage_id: str) -> str | None:
        try:
            return str(
                BrokerClaimItem.get(BrokerClaimItem.key(brokerage_id), "BROKER", consistent_read=True).account_id
            )
        except DoesNotExist:
            return None

    def global_state(self) -> GlobalState:
        try:
            item = GlobalItem.get(GLOBAL_PK, GLOBAL_PK, consistent_read=True)
        except DoesNotExist:
            return GlobalState()
        return GlobalState(
            audit_head=ChainHead(int(item.audit_seq), item.audit_hash),
            config_version=int(item.config_version),
            version=item.version,
        )

    def commit_global(self, change: GlobalChange) -> GlobalState:
        state = change.state
        head = GlobalItem(
            audit_seq=state.audit_head.seq, audit_hash=state.audit_head.hash, config_version=state.config_version
        )
        if state.version is not None:  # unset = first write: must not exist yet
            head.version = state.version
        labels: list[str] = []
        with _transaction(labels, GLOBAL_PK) as tw:
            tw.save(head)
            labels.append("account")
            tw.save(_config_to_item(change.config), condition=ConfigVersionItem.pk.does_not_exist())
            labels.append("config")
            for record in change.audit:
                tw.save(_audit_to_item(record), condition=AuditItem.pk.does_not_exist())
                labels.append("audit")
        return GlobalState(state.audit_head, state.config_version, (state.version or 0) + 1)

    def latest_config(self, scope: str) -> ConfigVersion | None:
        items = ConfigVersionItem.query(
            scope_pk(scope), ConfigVersionItem.sk.startswith("CONFIG#"), scan_index_forward=False, limit=1
        )
        for item in items:
            return _config_from_item(scope, item)
        return None

    def config_history(self, scope: str) -> list[ConfigVersion]:
        items = ConfigVersionItem.query(scope_pk(scope), ConfigVersionItem.sk.startswith("CONFIG#"))
        return [_config_from_item(scope, i) for i in items]

    def audit_records(self, scope: str) -> list[AuditRecord]:
        items = AuditItem.query(scope_pk(scope), AuditItem.sk.startswith("AUDIT#"), consistent_read=True)
        return [_audit_from_item(scope, i) for i in items]


def _add(tw: TransactWrite, change: AccountChange, labels: list[str]) -> None:
    account = change.account
    tw.save(_account_to_item(account))
    labels.append("account")
    if change.claim_brokerage_id is not None:
        claim = BrokerClaimItem(
            BrokerClaimItem.key(change.claim_brokerage_id),
            account_id=account.account_id,
            claimed_at=_iso(change.audit[-1].at if change.audit else account.created_at),
        )
        tw.save(claim, condition=BrokerClaimItem.pk.does_not_exist())
        labels.append(f"broker:{change.claim_brokerage_id}")
    for movement in change.movements:
        tw.save(_movement_to_item(movement), condition=CashMovementItem.pk.does_not_exist())
        labels.append("movement")
    if change.config is not None:
        tw.save(_config_to_item(change.config), condition=ConfigVersionItem.pk.does_not_exist())
        labels.append("config")
    # The records' sequence numbers come from the chain head in the account item, whose version is
    # checked in this same transaction: no other write can hold these numbers, so no condition of their
    # own (each condition is work for the store on every commit).
    for record in change.audit:
        tw.save(_audit_to_item(record))
        labels.append("audit")
    for order in change.orders:  # guarded by the account's version condition above
        tw.save(
            OrderItem(
                account_pk(order.account_id),
                f"ORDER#{order.intent_id}",
                state=order.state.value,
                order=order_to_json(order),
            )
        )
        labels.append("order")


class _transaction:
    """A TransactWrite whose failure is reported in the domain's words, naming what clashed."""

    def __init__(self, labels: list[str], scope: str) -> None:
        self._labels = labels
        self._scope = scope
        # Reuse the models' connection (and its botocore client): creating one per commit is slow.
        self._tw = TransactWrite(connection=AccountItem._get_connection().connection)

    def __enter__(self) -> TransactWrite:
        return self._tw.__enter__()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self._tw.__exit__(exc_type, exc, tb)
        except TransactWriteError as err:
            raise self._conflict(err) from err

    def _conflict(self, err: TransactWriteError) -> Conflict:
        failed = [
            label
            for label, reason in zip(self._labels, err.cancellation_reasons, strict=False)
            if reason is not None and reason.code == "ConditionalCheckFailed"
        ]
        for label in failed:
            if label.startswith("broker:"):
                brokerage_id = label.split(":", 1)[1]
                return brokerage_id_taken(brokerage_id, DynamoAccountStore().brokerage_owner(brokerage_id))
        if failed:
            return Conflict(f"{self._scope} was changed concurrently; nothing was written, retry", field="version")
        return Conflict(
            f"write to {self._scope} was refused by the store ({err.cause_response_code}); nothing was written"
        )


def _iso(at: datetime) -> str:
    return at.isoformat()


def _account_to_item(a: Account) -> AccountItem:
    item = AccountItem(
        account_pk(a.account_id),
        "ACCOUNT",
        accounts_sk=a.account_id,
        name=a.name,
        status=a.status.value,
        brokerage_id=a.brokerage_id,
        parent_id=a.parent_id,
        lineage_id=a.lineage_id,
        created_at=_iso(a.created_at),
        sleeves={k.value: _sleeve_to_json(s) for k, s in a.sleeves.items()},
        movements=a.movements,
        executions_booked=a.executions_booked,
        settlements_booked=a.settlements_booked,
        audit_seq=a.audit_head.seq,
        audit_hash=a.audit_head.hash,
        protocol=_protocol_to_json(a.protocol),
        lifecycle=_lifecycle_to_json(a.lifecycle),
        tax={
            "lots": a.tax_lots.to_jsonable(),
            "gains": {str(year): list(terms) for year, terms in a.tax_gains_cents.items()},
        },
    )
    if a.version is not None:  # unset = new item: pynamodb then requires that it does not exist yet
        item.version = a.version
    return item


def _account_from_item(i: AccountItem) -> Account:
    sleeves = {SleeveKind(k): _sleeve_from_json(SleeveKind(k), s) for k, s in i.sleeves.items()}
    return Account(
        account_id=i.accounts_sk,
        name=i.name,
        status=AccountStatus(i.status),
        sleeves=sleeves,
        created_at=datetime.fromisoformat(i.created_at),
        brokerage_id=i.brokerage_id,
        parent_id=i.parent_id,
        lineage_id=i.lineage_id,
        movements=int(i.movements),
        executions_booked=int(i.executions_booked),
        settlements_booked=int(i.settlements_booked),
        audit_head=ChainHead(int(i.audit_seq), i.audit_hash),
        protocol=_protocol_from_json(i.protocol or {}),
        lifecycle=_lifecycle_from_json(i.lifecycle or {}),
        tax_lots=TaxLedger.from_jsonable(i.tax["lots"]) if i.tax else TaxLedger(),
        tax_gains_cents={int(y): (int(t[0]), int(t[1])) for y, t in (i.tax or {}).get("gains", {}).items()},
        version=i.version,
    )


def _sleeve_to_json(s: SleeveBalance) -> dict[str, object]:
    """Integers only (cents, quantities); positions keyed by symbol (ticker or OCC)."""
    return {
        "cash_cents": s.cash_cents,
        "buffer_cents": s.buffer_cents,
        "contributed_cents": s.contributed_cents,
        "positions": {i.symbol: q for i, q in s.positions.items()},
        "costs": {i.symbol: c for i, c in s.costs.items()},
        "realized_cents": s.realized_cents,
        "premium_cents": s.premium_cents,
        "commission_cents": s.commission_cents,
    }


def _sleeve_from_json(kind: SleeveKind, data: dict[str, Any]) -> SleeveBalance:
    return SleeveBalance(
        kind=kind,
        cash_cents=int(data["cash_cents"]),
        buffer_cents=int(data["buffer_cents"]),
        contributed_cents=int(data["contributed_cents"]),
        positions={instrument_from_symbol(sym): int(q) for sym, q in data.get("positions", {}).items()},
        costs={instrument_from_symbol(sym): int(c) for sym, c in data.get("costs", {}).items()},
        realized_cents=int(data.get("realized_cents", 0)),
        premium_cents=int(data.get("premium_cents", 0)),
        commission_cents=int(data.get("commission_cents", 0)),
    )


def _protocol_to_json(p: ProtocolState) -> dict[str, object]:
    return {
        "watches": {k: [w.entry_underlying_cents, w.level] for k, w in p.watches.items()},
        "paused_until": {k.value: d.isoformat() for k, d in p.paused_until.items()},
        "trade_pnls_cents": list(p.trade_pnls_cents),
        "closing_pnls_cents": dict(p.closing_pnls_cents),
        "day": p.day.isoformat() if p.day else None,
        "day_start_equity_cents": p.day_start_equity_cents,
        "safe_until": p.safe_until.isoformat() if p.safe_until else None,
    }


def _protocol_from_json(data: dict[str, Any]) -> ProtocolState:
    day, safe_until, start = data.get("day"), data.get("safe_until"), data.get("day_start_equity_cents")
    return ProtocolState(
        watches={k: Watch(int(v[0]), int(v[1])) for k, v in data.get("watches", {}).items()},
        paused_until={SleeveKind(k): date.fromisoformat(d) for k, d in data.get("paused_until", {}).items()},
        trade_pnls_cents=tuple(int(x) for x in data.get("trade_pnls_cents", [])),
        closing_pnls_cents={k: int(v) for k, v in data.get("closing_pnls_cents", {}).items()},
        day=date.fromisoformat(day) if day else None,
        day_start_equity_cents=int(start) if start is not None else None,
        safe_until=date.fromisoformat(safe_until) if safe_until else None,
    )


def _lifecycle_to_json(state: LifecycleState) -> dict[str, object]:
    return {
        "earmarks": dict(state.earmarks),
        "forks_made": state.forks_made,
        "funding_from": state.funding_from,
        "merging_into": state.merging_into,
        "merged_out_cents": state.merged_out_cents,
        "merges_received": list(state.merges_received),
        "forked_cents": {k.value: v for k, v in state.forked_cents.items()},
        "reinvested_on": state.reinvested_on.isoformat() if state.reinvested_on else None,
        "reinvest_base_cents": {k.value: v for k, v in state.reinvest_base_cents.items()},
    }


def _lifecycle_from_json(data: dict[str, Any]) -> LifecycleState:
    merged = data.get("merged_out_cents")
    return LifecycleState(
        earmarks={k: int(v) for k, v in data.get("earmarks", {}).items()},
        forks_made=int(data.get("forks_made", 0)),
        funding_from=data.get("funding_from"),
        merging_into=data.get("merging_into"),
        merged_out_cents=int(merged) if merged is not None else None,
        merges_received=tuple(data.get("merges_received", [])),
        forked_cents={SleeveKind(k): int(v) for k, v in data.get("forked_cents", {}).items()},
        reinvested_on=date.fromisoformat(data["reinvested_on"]) if data.get("reinvested_on") else None,
        reinvest_base_cents={SleeveKind(k): int(v) for k, v in data.get("reinvest_base_cents", {}).items()},
    )


def _with_version(a: Account, version: int) -> Account:
    return replace(a, version=version)


def _movement_to_item(m: CashMovement) -> CashMovementItem:
    return CashMovementItem(
        account_pk(m.account_id),
        seq_sk("CASH", m.seq),
        seq=m.seq,
        movement_id=m.movement_id,
        kind=m.kind.value,
        amount_cents=m.amount_cents,
        by_sleeve={k.value: v for k, v in m.by_sleeve.items()},
        at=_iso(m.at),
        reason=m.reason,
    )


def _movement_from_item(account_id: str, i: CashMovementItem) -> CashMovement:
    return CashMovement(
        account_id=account_id,
        seq=int(i.seq),
        kind=MovementKind(i.kind),
        amount_cents=int(i.amount_cents),
        by_sleeve={SleeveKind(k): int(v) for k, v in i.by_sleeve.items()},
        at=datetime.fromisoformat(i.at),
        reason=i.reason,
    )


def _config_to_item(c: ConfigVersion) -> ConfigVersionItem:
    return ConfigVersionItem(
        scope_pk(c.scope),
        seq_sk("CONFIG", c.version),
        config_version=c.version,
        overrides=dict(c.overrides),
        changes=dict(c.changes),
        author=c.author,
        reason=c.reason,
        at=_iso(c.at),
    )


def _config_from_item(scope: str, i: ConfigVersionItem) -> ConfigVersion:
    return ConfigVersion(
        scope=scope,
        version=int(i.config_version),
        overrides=i.overrides,
        changes=i.changes,
        author=i.author,
        reason=i.reason,
        at=datetime.fromisoformat(i.at),
    )


def _audit_to_item(r: AuditRecord) -> AuditItem:
    return AuditItem(
        scope_pk(r.scope),
        seq_sk("AUDIT", r.seq),
        seq=r.seq,
        at=_iso(r.at),
        actor=r.actor,
        action=r.action,
        details=dict(r.details),
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


def _audit_from_item(scope: str, i: AuditItem) -> AuditRecord:
    return AuditRecord(
        scope=scope,
        seq=int(i.seq),
        at=datetime.fromisoformat(i.at),
        actor=i.actor,
        action=i.action,
        details=i.details,
        prev_hash=i.prev_hash,
        hash=i.hash,
    )
