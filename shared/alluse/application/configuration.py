"""Configuration use cases: global defaults plus per-account overrides, every change a new version.

The effective configuration of an account is: product defaults (domain-spec) <- global override
layer <- the account's override layer. A change is validated against every configuration it
affects before anything is written; an invalid change writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from alluse.application.ports import AccountChange, AccountStore, Clock, GlobalChange, GlobalState
from alluse.domain.accounts import AccountStatus
from alluse.domain.audit import AuditEvent, chain
from alluse.domain.config import AllUseConfig, effective_config, merge_layers, to_jsonable
from alluse.domain.config_versions import GLOBAL_SCOPE, ConfigVersion
from alluse.domain.errors import IllegalTransition, ValidationFailed

_TERMINAL = (AccountStatus.MERGED, AccountStatus.CLOSED)


@dataclass(frozen=True)
class ConfigChange:
    changes: Mapping[str, Any]  # nested dict, e.g. {"gen": {"delta_band": {"min": "0.42"}}}
    author: str
    reason: str
    account_id: str | None = None  # None = the global layer


class ConfigurationService:
    def __init__(self, store: AccountStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def overrides_of_global(self) -> Mapping[str, Any]:
        latest = self._store.latest_config(GLOBAL_SCOPE)
        return latest.overrides if latest else {}

    def overrides_of(self, account_id: str) -> Mapping[str, Any]:
        latest = self._store.latest_config(account_id)
        return latest.overrides if latest else {}

    def effective(self, account_id: str | None = None) -> AllUseConfig:
        if account_id is None:
            return effective_config(self.overrides_of_global())
        self._store.get(account_id)  # an unknown account is an error, not the defaults
        return self.effective_for_known(account_id)

    def effective_for_known(self, account_id: str) -> AllUseConfig:
        """For a caller that has just read the account (no second read to prove it exists)."""
        return effective_config(self.overrides_of_global(), self.overrides_of(account_id))

    def history(self, account_id: str | None = None) -> list[ConfigVersion]:
        if account_id is not None:
            self._store.get(account_id)
        return self._store.config_history(account_id or GLOBAL_SCOPE)

    def change(self, request: ConfigChange) -> ConfigVersion:
        if not request.author.strip():
            raise ValidationFailed("a configuration change needs an author", field="author")
        if not request.reason.strip():
            raise ValidationFailed("a configuration change needs a reason", field="reason")
        if not request.changes:
            raise ValidationFailed("nothing to change: give at least one setting=value", field="changes")
        changes = to_jsonable(request.changes)
        if request.account_id is None:
            return self._change_global(changes, request)
        return self._change_account(request.account_id, changes, request)

    def _change_account(self, account_id: str, changes: dict[str, Any], request: ConfigChange) -> ConfigVersion:
        account = self._store.get(account_id)
        if account.status in _TERMINAL:
            raise IllegalTransition(f"account {account_id} is {account.status.value}; its configuration is frozen")
        latest = self._store.latest_config(account_id)
        layer = merge_layers(latest.overrides if latest else {}, changes)
        global_layer = self.overrides_of_global()
        _require_effect(
            effective_config(global_layer, latest.overrides if latest else {}), effective_config(global_layer, layer)
        )
        now = self._clock.now()
        version = ConfigVersion(
            account_id, (latest.version if latest else 0) + 1, layer, changes, request.author, request.reason, now
        )
        records, head = chain(account_id, account.audit_head, [_changed_event(version)], actor=request.author, at=now)
        self._store.commit(AccountChange(account=replace(account, audit_head=head), audit=records, config=version))
        return version

    def _change_global(self, changes: dict[str, Any], request: ConfigChange) -> ConfigVersion:
        state = self._store.global_state()
        current = self.overrides_of_global()
        layer = merge_layers(current, changes)
        _require_effect(effective_config(current), effective_config(layer))
        self._require_valid_for_every_account(layer)
        now = self._clock.now()
        version = ConfigVersion(
            GLOBAL_SCOPE, state.config_version + 1, layer, changes, request.author, request.reason, now
        )
        records, head = chain(GLOBAL_SCOPE, state.audit_head, [_changed_event(version)], actor=request.author, at=now)
        self._store.commit_global(
            GlobalChange(
                state=GlobalState(audit_head=head, config_version=version.version, version=state.version),
                audit=records,
                config=version,
            )
        )
        return version

    def _require_valid_for_every_account(self, global_layer: Mapping[str, Any]) -> None:
        """A global change must not make any account's own overrides invalid (e.g. weights)."""
        for account in self._store.list_accounts():
            if account.status in _TERMINAL:
                continue
            layer = self.overrides_of(account.account_id)
            if not layer:
                continue
            try:
                effective_config(global_layer, layer)
            except ValidationFailed as err:
                raise ValidationFailed(
                    f"refused: with this change account {account.account_id}'s configuration would be invalid"
                    f" ({err.message})",
                    field=err.field,
                    problems=[f"{account.account_id}: {p}" for p in err.problems],
                ) from None


def _require_effect(before: AllUseConfig, after: AllUseConfig) -> None:
    if before == after:
        raise ValidationFailed("every value given is already in effect; no new version written", field="changes")


def _changed_event(version: ConfigVersion) -> AuditEvent:
    return AuditEvent(
        "CONFIG_CHANGED",
        {"version": version.version, "changes": dict(version.changes), "reason": version.reason},
    )
