"""Account use cases: create, link, fund, withdraw, change status. Each is one atomic store commit
carrying the new state and its audit records; a concurrent writer makes it re-read and re-apply."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from alluse.application.configuration import ConfigurationService
from alluse.application.ports import AccountChange, AccountStore, Clock
from alluse.domain import accounts as domain
from alluse.domain.accounts import Account, AccountStatus, CashMovement
from alluse.domain.audit import AuditEvent, chain
from alluse.domain.config import effective_config, to_jsonable
from alluse.domain.config_versions import ConfigVersion
from alluse.domain.errors import Conflict, ValidationFailed
from alluse.domain.money import require_positive


@dataclass(frozen=True)
class NewAccount:
    capital_cents: int
    name: str = ""
    brokerage_id: str | None = None
    account_id: str | None = None
    overrides: Mapping[str, Any] | None = None  # initial per-account configuration (version 1)
    parent_id: str | None = None


class AccountService:
    def __init__(self, store: AccountStore, clock: Clock, *, max_attempts: int = 3) -> None:
        self._store = store
        self._clock = clock
        self._config = ConfigurationService(store, clock)
        self._max_attempts = max_attempts

    def global_layer(self) -> Mapping[str, Any]:
        """The global configuration layer as stored now (see `create`)."""
        return self._config.overrides_of_global()

    # --- queries -------------------------------------------------------------------------
    def get(self, account_id: str) -> Account:
        return self._store.get(account_id)

    def list_accounts(self) -> list[Account]:
        return list(self._store.list_accounts())

    def movements(self, account_id: str) -> list[CashMovement]:
        self._store.get(account_id)  # NotFound for an unknown account, not an empty list
        return self._store.movements(account_id)

    # --- commands ------------------------------------------------------------------------
    def create(self, request: NewAccount, *, actor: str, global_layer: Mapping[str, Any] | None = None) -> Account:
        """`global_layer`: the global configuration layer when the caller has just read it (a fleet created
        in one go is created under one reading); read here otherwise."""
        require_positive(request.capital_cents, field="capital")
        if global_layer is None:
            global_layer = self._config.overrides_of_global()
        account_layer = to_jsonable(request.overrides or {})
        cfg = effective_config(global_layer, account_layer)
        pattern = cfg.account.brokerage_id_pattern
        if request.brokerage_id is not None:
            self._require_unclaimed(request.brokerage_id, pattern)
        account_id = domain.validate_account_id(request.account_id or self._next_account_id())
        now = self._clock.now()
        account, funding = domain.open_account(
            account_id,
            name=request.name,
            capital_cents=request.capital_cents,
            weights=cfg.allocation.weights(),
            buffer_pct=cfg.allocation.cash_buffer_pct,
            now=now,
            parent_id=request.parent_id,
        )
        events = [
            AuditEvent("ACCOUNT_CREATED", {"name": account.name, "parent_id": request.parent_id}),
            _funded_event(funding),
        ]
        config = None
        if account_layer:
            config = ConfigVersion(account_id, 1, account_layer, account_layer, actor, "initial configuration", now)
            events.append(AuditEvent("CONFIG_CHANGED", {"version": 1, "changes": account_layer}))
        if request.brokerage_id is not None:
            account = domain.link_broker(account, request.brokerage_id, pattern=pattern)
            events += _link_events(request.brokerage_id)
        records, head = chain(account_id, account.audit_head, events, actor=actor, at=now)
        change = AccountChange(
            account=replace(account, audit_head=head),
            audit=records,
            movements=[funding],
            config=config,
            claim_brokerage_id=request.brokerage_id,
        )
        try:
            return self._store.commit(change)
        except Conflict as err:
            if err.field == "version":  # only a caller-chosen id can collide
                raise Conflict(f"account '{account_id}' already exists", field="account_id") from None
            raise

    def link_broker(self, account_id: str, brokerage_id: str, *, actor: str) -> Account:
        def apply(account: Account) -> tuple[Account, list[AuditEvent], dict[str, Any]]:
            pattern = self._config.effective_for_known(account_id).account.brokerage_id_pattern
            self._require_unclaimed(brokerage_id, pattern)
            linked = domain.link_broker(account, brokerage_id, pattern=pattern)
            return linked, _link_events(brokerage_id, previous=account.status), {"claim": brokerage_id}

        return self._update(account_id, apply, actor=actor)

    def deposit(self, account_id: str, amount_cents: int, *, actor: str, reason: str = "") -> Account:
        def apply(account: Account) -> tuple[Account, list[AuditEvent], dict[str, Any]]:
            cfg = self._config.effective_for_known(account_id)
            funded, movement = domain.deposit(
                account,
                amount_cents,
                weights=cfg.allocation.weights(),
                buffer_pct=cfg.allocation.cash_buffer_pct,
                now=self._clock.now(),
                reason=reason,
            )
            return funded, [_funded_event(movement)], {"movements": [movement]}

        return self._update(account_id, apply, actor=actor)

    def withdraw(self, account_id: str, amount_cents: int, *, actor: str, reason: str = "") -> Account:
        def apply(account: Account) -> tuple[Account, list[AuditEvent], dict[str, Any]]:
            cfg = self._config.effective_for_known(account_id)
            paid, movement = domain.withdraw(
                account, amount_cents, weights=cfg.allocation.weights(), now=self._clock.now(), reason=reason
            )
            return paid, [_funded_event(movement)], {"movements": [movement]}

        return self._update(account_id, apply, actor=actor)

    def change_status(self, account_id: str, status: AccountStatus, *, actor: str, reason: str) -> Account:
        if not reason.strip():
            raise ValidationFailed("a status change needs a reason", field="reason")

        def apply(account: Account) -> tuple[Account, list[AuditEvent], dict[str, Any]]:
            changed = domain.change_status(account, status)
            event = AuditEvent("STATUS_CHANGED", {"from": account.status.value, "to": status.value, "reason": reason})
            return changed, [event], {}

        return self._update(account_id, apply, actor=actor)

    # --- mechanics -----------------------------------------------------------------------
    def _update(
        self,
        account_id: str,
        apply: Callable[[Account], tuple[Account, list[AuditEvent], dict[str, Any]]],
        *,
        actor: str,
    ) -> Account:
        """Read, apply the rule, commit; on a concurrent write re-read and re-apply (bounded)."""
        for attempt in range(1, self._max_attempts + 1):
            account = self._store.get(account_id)
            changed, events, extra = apply(account)
            records, head = chain(account_id, account.audit_head, events, actor=actor, at=self._clock.now())
            change = AccountChange(
                account=replace(changed, audit_head=head),
                audit=records,
                movements=extra.get("movements", ()),
                claim_brokerage_id=extra.get("claim"),
            )
            try:
                return self._store.commit(change)
            except Conflict as err:
                if err.field != "version" or attempt == self._max_attempts:
                    raise
        raise AssertionError("unreachable")

    def _require_unclaimed(self, brokerage_id: str, pattern: str) -> None:
        """Early, friendly refusal; the store's transaction is what guarantees it under races."""
        domain.validate_brokerage_id(brokerage_id, pattern=pattern)
        owner = self._store.brokerage_owner(brokerage_id)
        if owner is not None:
            raise domain.brokerage_id_taken(brokerage_id, owner)

    def _next_account_id(self) -> str:
        return f"ACC-{self._store.next_account_number():05d}"


def _funded_event(movement: CashMovement) -> AuditEvent:
    action = "ACCOUNT_FUNDED" if movement.kind == domain.MovementKind.DEPOSIT else "ACCOUNT_WITHDRAWAL"
    return AuditEvent(
        action,
        {
            "movement_id": movement.movement_id,
            "amount_cents": movement.amount_cents,
            "by_sleeve_cents": {k.value: v for k, v in movement.by_sleeve.items()},
            "reason": movement.reason,
        },
    )


def _link_events(brokerage_id: str, previous: AccountStatus = AccountStatus.PENDING_BROKER_LINK) -> list[AuditEvent]:
    return [
        AuditEvent("BROKER_LINKED", {"brokerage_id": brokerage_id}),
        AuditEvent(
            "STATUS_CHANGED", {"from": previous.value, "to": AccountStatus.ACTIVE.value, "reason": "broker linked"}
        ),
    ]
