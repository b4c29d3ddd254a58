"""Configuration use cases: global + per-account layers, versions with author/reason/time,
refusals that write nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.application.accounts import AccountService
from alluse.application.audit import AuditService
from alluse.application.configuration import ConfigChange, ConfigurationService
from alluse.domain.accounts import AccountStatus
from alluse.domain.config import default_config, parse_assignments
from alluse.domain.config_versions import GLOBAL_SCOPE
from alluse.domain.errors import IllegalTransition, NotFound, ValidationFailed
from alluse.domain.sleeves import SleeveKind
from tests.conftest import new_account


def change(*assignments: str, account_id: str | None = None, reason: str = "tuning") -> ConfigChange:
    return ConfigChange(parse_assignments(assignments), author="alice", reason=reason, account_id=account_id)


def test_effective_config_is_the_defaults_until_changed(configuration: ConfigurationService) -> None:
    assert configuration.effective() == default_config()
    assert configuration.history() == []


def test_account_override_is_versioned_and_scoped(
    configuration: ConfigurationService, accounts: AccountService, audit: AuditService, clock
) -> None:  # type: ignore[no-untyped-def]
    a = accounts.create(new_account(), actor="t").account_id
    b = accounts.create(new_account(), actor="t").account_id
    version = configuration.change(change("gen.delta_band.min=0.42", "gen.delta_band.max=0.48", account_id=a))
    assert (version.scope, version.version, version.author, version.reason, version.at) == (
        a,
        1,
        "alice",
        "tuning",
        clock.now(),
    )
    assert configuration.effective(a).gen.delta_band.min == Decimal("0.42")
    assert configuration.effective(b).gen.delta_band == default_config().gen.delta_band
    assert configuration.effective() == default_config()
    configuration.change(change("gen.delta_band.min=0.44", account_id=a, reason="narrower"))
    history = configuration.history(a)
    assert [v.version for v in history] == [1, 2]
    assert history[1].changes == {"gen": {"delta_band": {"min": "0.44"}}}
    assert history[1].overrides == {"gen": {"delta_band": {"min": "0.44", "max": "0.48"}}}
    trail = audit.trail(a)
    assert [r.action for r in trail][-2:] == ["CONFIG_CHANGED", "CONFIG_CHANGED"]
    assert audit.verify(a).ok


def test_global_change_applies_to_every_account_without_override(
    configuration: ConfigurationService, accounts: AccountService, audit: AuditService
) -> None:
    a = accounts.create(new_account(), actor="t").account_id
    configuration.change(change("tax.short_term_rate=0.35"))
    assert configuration.effective(a).tax.short_term_rate == Decimal("0.35")
    assert [r.action for r in audit.trail(GLOBAL_SCOPE)] == ["CONFIG_CHANGED"]
    assert audit.verify(GLOBAL_SCOPE).ok


def test_weights_not_summing_to_one_refused_and_nothing_written(
    configuration: ConfigurationService, accounts: AccountService, store: DynamoAccountStore
) -> None:
    a = accounts.create(new_account(), actor="t")
    with pytest.raises(ValidationFailed) as err:
        configuration.change(change("allocation.gen=0.50", account_id=a.account_id))
    assert err.value.field == "allocation" and "sum to 1" in str(err.value)
    assert configuration.history(a.account_id) == []
    assert store.get(a.account_id).audit_head == a.audit_head


def test_inverted_delta_band_refused(configuration: ConfigurationService) -> None:
    with pytest.raises(ValidationFailed) as err:
        configuration.change(change("rev.delta_band.min=0.45"))
    assert err.value.field is not None and err.value.field.startswith("rev.delta_band")
    assert configuration.history() == []


def test_unknown_setting_refused_naming_it(configuration: ConfigurationService) -> None:
    with pytest.raises(ValidationFailed, match=r"gen\.delta_bnd"):
        configuration.change(change("gen.delta_bnd.min=0.42"))


def test_global_change_that_breaks_an_account_override_is_refused(
    configuration: ConfigurationService, accounts: AccountService
) -> None:
    a = accounts.create(new_account(), actor="t").account_id
    configuration.change(change("allocation.gen=0.50", "allocation.rev=0.20", account_id=a))
    with pytest.raises(ValidationFailed, match=a) as err:
        configuration.change(change("allocation.com=0.40", "allocation.rev=0.20"))  # global 0.4/0.2/0.4 is fine...
    assert any(p.startswith(a) for p in err.value.problems)  # ...but a's 0.5/0.2/0.4 is not
    assert configuration.history() == []


def test_weights_changed_together_are_accepted_and_used_by_deposits(
    configuration: ConfigurationService, accounts: AccountService
) -> None:
    a = accounts.create(new_account(1_000), actor="t").account_id
    configuration.change(change("allocation.gen=0.5", "allocation.rev=0.25", "allocation.com=0.25", account_id=a))
    before = accounts.get(a)
    after = accounts.deposit(a, 1_000_00, actor="t")
    assert after.sleeve(SleeveKind.GEN).cash_cents - before.sleeve(SleeveKind.GEN).cash_cents == 500_00


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ConfigChange({"tax": {"short_term_rate": "0.3"}}, author="", reason="r"), "author"),
        (ConfigChange({"tax": {"short_term_rate": "0.3"}}, author="a", reason=" "), "reason"),
        (ConfigChange({}, author="a", reason="r"), "changes"),
        (ConfigChange({"tax": {"short_term_rate": "0.30"}}, author="a", reason="r"), "changes"),  # already so
    ],
)
def test_incomplete_or_empty_changes_refused(
    configuration: ConfigurationService, request_: ConfigChange, field: str
) -> None:
    with pytest.raises(ValidationFailed) as err:
        configuration.change(request_)
    assert err.value.field == field
    assert configuration.history() == []


def test_unknown_account_refused(configuration: ConfigurationService) -> None:
    with pytest.raises(NotFound):
        configuration.change(change("tax.short_term_rate=0.35", account_id="ACC-404"))
    with pytest.raises(NotFound):
        configuration.effective("ACC-404")


def test_terminal_account_configuration_is_frozen(
    configuration: ConfigurationService, accounts: AccountService
) -> None:
    a = accounts.create(new_account(), actor="t").account_id
    accounts.change_status(a, AccountStatus.CLOSED, actor="t", reason="done")
    with pytest.raises(IllegalTransition, match="frozen"):
        configuration.change(change("tax.short_term_rate=0.35", account_id=a))


def test_initial_overrides_at_creation_are_version_one(
    configuration: ConfigurationService, accounts: AccountService
) -> None:
    a = accounts.create(new_account(overrides={"hitl": {"premium_floor_policy": "skip"}}), actor="t").account_id
    assert configuration.effective(a).hitl.premium_floor_policy == "skip"
    assert [v.version for v in configuration.history(a)] == [1]


def test_invalid_initial_overrides_create_nothing(accounts: AccountService, store: DynamoAccountStore) -> None:
    with pytest.raises(ValidationFailed):
        accounts.create(new_account(overrides={"allocation": {"gen": "0.9"}}), actor="t")
    assert list(store.list_accounts()) == []
