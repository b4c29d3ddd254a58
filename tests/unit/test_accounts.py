"""Allocation, deposits, withdrawals and the status lifecycle (domain-spec A1, A2)."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alluse.domain.accounts import (
    Account,
    AccountStatus,
    MovementKind,
    change_status,
    deposit,
    legal_next_statuses,
    link_broker,
    open_account,
    withdraw,
)
from alluse.domain.config import default_config
from alluse.domain.errors import Conflict, IllegalTransition, InsufficientFunds, ValidationFailed
from alluse.domain.money import fraction_of
from alluse.domain.sleeves import SleeveKind

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
CFG = default_config()
WEIGHTS = CFG.allocation.weights()
BUFFER = CFG.allocation.cash_buffer_pct
PATTERN = CFG.account.brokerage_id_pattern
GEN, REV, COM, STARLAB = SleeveKind.GEN, SleeveKind.REV, SleeveKind.COM, SleeveKind.STARLAB


def opened(capital_cents: int = 50_000_000, weights: dict[SleeveKind, Decimal] | None = None) -> Account:
    account, _ = open_account(
        "ACC-1", name="t", capital_cents=capital_cents, weights=weights or WEIGHTS, buffer_pct=BUFFER, now=NOW
    )
    return account


@pytest.mark.parametrize(
    ("capital", "gen", "rev", "com"),
    [
        (1_000_000, 400_000, 300_000, 300_000),  # the IAI verification examples: $1M, $5M, $10M
        (5_000_000, 2_000_000, 1_500_000, 1_500_000),
        (10_000_000, 4_000_000, 3_000_000, 3_000_000),
    ],
)
def test_default_split_and_buffers(capital: int, gen: int, rev: int, com: int) -> None:
    account = opened(capital * 100)
    assert account.status == AccountStatus.PENDING_BROKER_LINK
    for kind, expected in ((GEN, gen), (REV, rev), (COM, com)):
        sleeve = account.sleeve(kind)
        assert sleeve.cash_cents == expected * 100
        assert sleeve.buffer_cents == expected * 5  # 5 % of the sleeve, in cents
        assert sleeve.free_cents == expected * 95
    assert account.sleeve(STARLAB).cash_cents == 0
    assert account.cash_cents == capital * 100


def test_open_account_records_initial_funding_movement() -> None:
    _, movement = open_account("ACC-1", name="t", capital_cents=12_345, weights=WEIGHTS, buffer_pct=BUFFER, now=NOW)
    assert movement.kind == MovementKind.DEPOSIT
    assert movement.amount_cents == 12_345
    assert sum(movement.by_sleeve.values()) == 12_345
    assert movement.movement_id == "ACC-1-CM000001"


@pytest.mark.parametrize("capital", [0, -1, -50_000_000])
def test_non_positive_capital_refused(capital: int) -> None:
    with pytest.raises(ValidationFailed) as err:
        opened(capital)
    assert err.value.field == "capital"


def test_bad_account_id_refused() -> None:
    with pytest.raises(ValidationFailed, match="account id"):
        open_account("acc 1", name="", capital_cents=100, weights=WEIGHTS, buffer_pct=BUFFER, now=NOW)


def test_deposit_resplits_by_target_weights() -> None:
    account = opened()
    funded, movement = deposit(account, 10_000_00, weights=WEIGHTS, buffer_pct=BUFFER, now=NOW, reason="top-up")
    assert movement.by_sleeve == {GEN: 4_000_00, REV: 3_000_00, COM: 3_000_00, STARLAB: 0}
    assert funded.sleeve(GEN).buffer_cents == account.sleeve(GEN).buffer_cents + 200_00
    assert funded.movements == 2
    assert account.cash_cents == 50_000_000  # the input is not mutated


def test_deposit_uses_current_weights() -> None:
    skewed = {GEN: Decimal("0.5"), REV: Decimal("0.25"), COM: Decimal("0.25"), STARLAB: Decimal(0)}
    funded, movement = deposit(opened(), 1_000, weights=skewed, buffer_pct=BUFFER, now=NOW)
    assert movement.by_sleeve[GEN] == 500
    assert funded.cash_cents == 50_000_000 + 1_000


def test_withdrawal_beyond_free_cash_refused() -> None:
    account = opened(100_000)  # $1,000: buffers $50, free $950
    with pytest.raises(InsufficientFunds) as err:
        withdraw(account, 95_001, weights=WEIGHTS, now=NOW)
    assert err.value.field == "amount"
    paid, _ = withdraw(account, 95_000, weights=WEIGHTS, now=NOW)  # all the free cash is fine
    assert paid.free_cents == 0
    assert paid.buffer_cents == account.buffer_cents


def test_withdrawal_falls_back_to_other_sleeves_when_one_is_short() -> None:
    account = opened(100_000)
    gen = account.sleeve(GEN)
    drained = replace(account, sleeves={**account.sleeves, GEN: replace(gen, cash_cents=gen.buffer_cents)})
    paid, movement = withdraw(drained, 10_000, weights=WEIGHTS, now=NOW)
    assert movement.by_sleeve[GEN] == 0
    assert movement.by_sleeve[REV] + movement.by_sleeve[COM] == 10_000
    assert paid.sleeve(GEN).cash_cents == gen.buffer_cents


@pytest.mark.parametrize("amount", [0, -100])
def test_non_positive_movements_refused(amount: int) -> None:
    with pytest.raises(ValidationFailed):
        deposit(opened(), amount, weights=WEIGHTS, buffer_pct=BUFFER, now=NOW)
    with pytest.raises(ValidationFailed):
        withdraw(opened(), amount, weights=WEIGHTS, now=NOW)


# --- status lifecycle ------------------------------------------------------------------------------

EXPECTED_LEGAL = {
    AccountStatus.PENDING_BROKER_LINK: {AccountStatus.ACTIVE, AccountStatus.CLOSED},
    AccountStatus.ACTIVE: {AccountStatus.SAFE, AccountStatus.HALTED, AccountStatus.MERGED, AccountStatus.CLOSED},
    AccountStatus.SAFE: {AccountStatus.ACTIVE, AccountStatus.HALTED, AccountStatus.MERGED, AccountStatus.CLOSED},
    AccountStatus.HALTED: {AccountStatus.ACTIVE, AccountStatus.SAFE, AccountStatus.MERGED, AccountStatus.CLOSED},
    AccountStatus.MERGED: set(),
    AccountStatus.CLOSED: set(),
}


@pytest.mark.parametrize("source", list(AccountStatus))
@pytest.mark.parametrize("target", list(AccountStatus))
def test_every_transition_is_legal_or_refused(source: AccountStatus, target: AccountStatus) -> None:
    account = replace(opened(), status=source, brokerage_id="DU1234567")
    assert legal_next_statuses(source) == EXPECTED_LEGAL[source]
    if target in EXPECTED_LEGAL[source]:
        assert change_status(account, target).status == target
    else:
        with pytest.raises(IllegalTransition) as err:
            change_status(account, target)
        assert err.value.field == "status"


def test_merged_back_to_active_refused_with_reason() -> None:
    merged = replace(opened(), status=AccountStatus.MERGED, brokerage_id="DU1234567")
    with pytest.raises(IllegalTransition, match="cannot go from MERGED to ACTIVE"):
        change_status(merged, AccountStatus.ACTIVE)


def test_active_needs_a_brokerage_link() -> None:
    with pytest.raises(IllegalTransition, match="no brokerage account"):
        change_status(opened(), AccountStatus.ACTIVE)


def test_link_broker_activates_once() -> None:
    linked = link_broker(opened(), "DU1234567", pattern=PATTERN)
    assert linked.status == AccountStatus.ACTIVE and linked.brokerage_id == "DU1234567"
    with pytest.raises(Conflict, match="exactly one brokerage account"):
        link_broker(linked, "DU7654321", pattern=PATTERN)


@pytest.mark.parametrize("bad", ["", "du1234567", "X1234567", "DU12", "DU1234567 "])
def test_malformed_brokerage_id_refused(bad: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        link_broker(opened(), bad, pattern=PATTERN)
    assert err.value.field == "brokerage_id"


@pytest.mark.parametrize("status", [AccountStatus.MERGED, AccountStatus.CLOSED])
def test_no_money_moves_in_terminal_accounts(status: AccountStatus) -> None:
    done = replace(opened(), status=status)
    with pytest.raises(IllegalTransition):
        deposit(done, 100, weights=WEIGHTS, buffer_pct=BUFFER, now=NOW)
    with pytest.raises(IllegalTransition):
        withdraw(done, 100, weights=WEIGHTS, now=NOW)


# --- money invariants (hypothesis) ---------------------------------------------------------------

cents = st.integers(min_value=1, max_value=10**11)
weight_sets = st.lists(st.integers(min_value=0, max_value=100), min_size=3, max_size=3).filter(lambda w: sum(w) > 0)
operations = st.lists(st.tuples(st.sampled_from(["deposit", "withdraw"]), cents, weight_sets), max_size=25)


@given(initial=cents, ops=operations, buffer_pct=st.sampled_from(["0", "0.05", "0.10", "0.333"]))
def test_movements_conserve_every_cent_and_never_touch_buffers(
    initial: int, ops: list[tuple[str, int, list[int]]], buffer_pct: str
) -> None:
    pct = Decimal(buffer_pct)
    account, _ = open_account("ACC-1", name="p", capital_cents=initial, weights=WEIGHTS, buffer_pct=pct, now=NOW)
    expected_cash, applied = initial, 0
    for op, amount, raw in ops:
        weights = {GEN: Decimal(raw[0]), REV: Decimal(raw[1]), COM: Decimal(raw[2]), STARLAB: Decimal(0)}
        before = account
        if op == "deposit":
            account, movement = deposit(account, amount, weights=weights, buffer_pct=pct, now=NOW)
            expected_cash += amount
            for kind, part in movement.by_sleeve.items():  # each buffer grows by exactly its share's pct
                grown = account.sleeve(kind).buffer_cents - before.sleeve(kind).buffer_cents
                assert grown == fraction_of(part, pct)
        else:
            if amount > account.free_cents:
                with pytest.raises(InsufficientFunds):
                    withdraw(account, amount, weights=weights, now=NOW)
                continue
            account, movement = withdraw(account, amount, weights=weights, now=NOW)
            expected_cash -= amount
            # a withdrawal never reduces a buffer
            assert all(account.sleeve(k).buffer_cents == before.sleeve(k).buffer_cents for k in account.sleeves)
        assert sum(movement.by_sleeve.values()) == amount
        for kind, sleeve in account.sleeves.items():
            delta = sleeve.cash_cents - before.sleeve(kind).cash_cents
            assert abs(delta) == movement.by_sleeve[kind]
            assert sleeve.cash_cents >= sleeve.buffer_cents >= 0  # the buffer is never spent
            assert sleeve.contributed_cents == sleeve.cash_cents  # cash-only sleeves: contributed == cash
        assert account.cash_cents == expected_cash
        applied += 1
    assert account.movements == 1 + applied  # every applied movement counted once, refused ones not at all
