"""Forks and merges as pure rules (A9, A10, B§6): when they are due, what they move, and that the money
moving between accounts is counted exactly once through every intermediate state.

The property tests drive random sequences of operations over cash-only accounts: deposits, fill-like
cash changes, forks (decide_fork or any amount, earmark, open_child, confirm_fork) and merges
(decide_merge, start_merge, complete_merge_out, receive_merge), and check after every step that
`money_in_system` is what was put in (to the cent) and that no sleeve's cash is ever below its buffer.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from alluse.domain.accounts import (
    Account,
    AccountStatus,
    MovementKind,
    deposit,
    link_broker,
    open_account,
)
from alluse.domain.config import AllUseConfig, LifecycleConfig, default_config, effective_config
from alluse.domain.errors import Conflict, InsufficientFunds, ValidationFailed
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.lifecycle import (
    ForkDecision,
    MergeDecision,
    child_id,
    complete_merge_out,
    confirm_fork,
    decide_fork,
    decide_merge,
    earmark,
    estimated_tax_cents,
    evaluation_due,
    is_flat,
    merge_movement,
    merge_target,
    money_in_system,
    open_child,
    receive_merge,
    start_merge,
    surplus_cents,
)
from alluse.domain.money import fraction_of
from alluse.domain.sleeves import SLEEVE_ORDER, SleeveKind

GEN, REV, COM, STARLAB = SleeveKind.GEN, SleeveKind.REV, SleeveKind.COM, SleeveKind.STARLAB
CFG = default_config()
BUFFER = CFG.allocation.cash_buffer_pct
PATTERN = CFG.account.brokerage_id_pattern
NOW = datetime(2026, 12, 3, 15, tzinfo=UTC)
DOLLAR = 100
_PUT = OptionContract("TSLA", date(2026, 12, 4), 200_00, OptionRight.PUT)


def config(**lifecycle: object) -> AllUseConfig:
    return effective_config({"lifecycle": lifecycle})


def main_account(account_id: str = "ACC-00001", capital_cents: int = 500_000 * DOLLAR, **kwargs: object) -> Account:
    opened, _ = open_account(
        account_id,
        name="test",
        capital_cents=capital_cents,
        weights=CFG.allocation.weights(),
        buffer_pct=BUFFER,
        now=NOW,
        **kwargs,  # type: ignore[arg-type]
    )
    return link_broker(opened, f"DU{1_000_000 + zlib.crc32(account_id.encode()) % 8_000_000}", pattern=PATTERN)


def gained(account: Account, sleeve: SleeveKind, cents: int) -> Account:
    """A fill-like cash change: premium kept (or a loss paid) in one sleeve."""
    balance = account.sleeve(sleeve)
    balance = replace(balance, cash_cents=balance.cash_cents + cents, realized_cents=balance.realized_cents + cents)
    return replace(account, sleeves={**account.sleeves, sleeve: balance})


def cash_equity(account: Account) -> dict[SleeveKind, int]:
    return {k: s.cash_cents for k, s in account.sleeves.items()}


def forked(parent: Account, gain_cents: int, cfg: AllUseConfig = CFG) -> tuple[Account, Account, ForkDecision]:
    """A parent with a Gen gain, forked and confirmed: (parent, funded child, decision)."""
    parent = gained(parent, GEN, gain_cents)
    decision = decide_fork(parent, cash_equity(parent), cfg)
    assert decision is not None
    parent = earmark(parent, decision)
    child, _ = open_child(parent, decision, buffer_pct=BUFFER, now=NOW)
    child = link_broker(child, "DU7000001", pattern=PATTERN)
    parent, child = confirm_fork(parent, child)
    return parent, child, decision


# --- decisions: surplus and thresholds (A9) ----------------------------------------------------------

# 71,428.57 of gain less 30 % tax (21,428.57, half-even) is exactly the default 50,000.00 threshold.
AT_THRESHOLD_GAIN = 7_142_857


def test_surplus_is_the_gain_after_estimated_tax_at_the_short_term_rate() -> None:
    assert estimated_tax_cents(AT_THRESHOLD_GAIN, CFG) == 2_142_857
    assert surplus_cents(10_000_000 + AT_THRESHOLD_GAIN, 10_000_000, CFG) == 5_000_000
    assert surplus_cents(9_000_000, 10_000_000, CFG) == -1_000_000  # a loss: no tax, no surplus
    assert estimated_tax_cents(-5, CFG) == estimated_tax_cents(0, CFG) == 0
    assert estimated_tax_cents(5, CFG) == 2  # 1.5 cents: half-even to 2
    assert estimated_tax_cents(15, CFG) == 4  # 4.5 cents: half-even to 4
    lower = effective_config({"tax": {"short_term_rate": "0.20", "long_term_rate": "0.01"}})
    assert surplus_cents(10_000_000 + 1_000_000, 10_000_000, lower) == 800_000  # the short-term rate, not long


@pytest.mark.parametrize(
    ("gain", "forks"),
    [
        (5_000_000, False),  # 50,000 pre-tax is only 35,000 after tax
        (AT_THRESHOLD_GAIN - 1, False),  # a cent under after tax
        (AT_THRESHOLD_GAIN, True),  # exactly at: forks
        (AT_THRESHOLD_GAIN + 100_000, True),
    ],
)
def test_gen_surplus_below_at_and_above_the_threshold(gain: int, forks: bool) -> None:
    parent = gained(main_account(), GEN, gain)
    decision = decide_fork(parent, cash_equity(parent), CFG)
    if not forks:
        assert decision is None
        return
    assert decision is not None
    gen = parent.sleeve(GEN)
    surplus = surplus_cents(gen.cash_cents, gen.contributed_cents, CFG)
    assert decision.sleeve is GEN and decision.amount_cents == decision.surplus_cents == surplus
    assert decision.threshold_cents == 5_000_000
    assert (decision.parent_id, decision.child_id) == ("ACC-00001", "ACC-00001-F1")


def test_gen_surplus_is_judged_on_marked_equity_not_cash() -> None:
    parent = gained(main_account(), GEN, AT_THRESHOLD_GAIN)
    equity = cash_equity(parent)
    assert decide_fork(parent, {**equity, GEN: equity[GEN] - 1}, CFG) is None  # a position marked a cent down
    assert decide_fork(parent, equity, CFG) is not None


def test_gen_child_is_split_50_50_gen_com_each_with_its_buffer() -> None:
    parent = gained(main_account(), GEN, 20_000_000)
    decision = decide_fork(parent, cash_equity(parent), CFG)
    assert decision is not None
    assert dict(decision.weights) == {GEN: Decimal("0.5"), REV: Decimal(0), COM: Decimal("0.5"), STARLAB: Decimal(0)}
    child, funding = open_child(parent, decision, buffer_pct=BUFFER, now=NOW)
    amount = decision.amount_cents
    assert child.sleeve(GEN).cash_cents + child.sleeve(COM).cash_cents == amount == funding.amount_cents
    assert abs(child.sleeve(GEN).cash_cents - child.sleeve(COM).cash_cents) <= 1
    assert child.sleeve(REV).cash_cents == child.sleeve(STARLAB).cash_cents == 0
    for kind in (GEN, COM):
        balance = child.sleeve(kind)
        assert balance.buffer_cents == -(-balance.cash_cents * 5 // 100)  # 5 %, rounded up
        assert balance.contributed_cents == balance.cash_cents
    assert child.status is AccountStatus.PENDING_BROKER_LINK and child.brokerage_id is None
    assert (child.parent_id, child.lineage_id, child.lifecycle.funding_from) == ("ACC-00001", "ACC-00001", "ACC-00001")
    assert child.account_id == "ACC-00001-F1"


def test_rev_surplus_forks_a_new_40_30_30_account() -> None:
    parent = gained(main_account(), REV, 80_000_000)  # 560,000 after tax, over the 500,000 Rev rule
    decision = decide_fork(parent, cash_equity(parent), CFG)
    assert decision is not None and decision.sleeve is REV
    assert decision.amount_cents == 80_000_000 - 24_000_000 and decision.threshold_cents == 50_000_000
    child, _ = open_child(parent, decision, buffer_pct=BUFFER, now=NOW)
    cash = {k: child.sleeve(k).cash_cents for k in SLEEVE_ORDER}
    assert cash == {GEN: 22_400_000, REV: 16_800_000, COM: 16_800_000, STARLAB: 0}
    assert all(child.sleeve(k).buffer_cents == cash[k] // 20 for k in (GEN, REV, COM))
    below = gained(main_account(), REV, 71_428_570)  # 499,999.99 after tax
    assert decide_fork(below, cash_equity(below), CFG) is None


def test_gen_rule_comes_first_and_com_acc_never_forks() -> None:
    both = gained(gained(main_account(), REV, 80_000_000), GEN, 10_000_000)
    decision = decide_fork(both, cash_equity(both), CFG)
    assert decision is not None and decision.sleeve is GEN
    com_only = gained(main_account(), COM, 500_000_000)
    assert decide_fork(com_only, cash_equity(com_only), CFG) is None


def test_no_fork_while_one_is_in_flight_merging_waiting_or_not_trading() -> None:
    rich = gained(main_account(), GEN, 20_000_000)
    decision = decide_fork(rich, cash_equity(rich), CFG)
    assert decision is not None
    waiting = earmark(rich, decision)
    again = gained(waiting, GEN, 20_000_000)
    assert decide_fork(again, cash_equity(again), CFG) is None  # the earmark is still in flight
    merging = replace(rich, lifecycle=replace(rich.lifecycle, merging_into="ACC-00009"))
    funding = replace(rich, lifecycle=replace(rich.lifecycle, funding_from="ACC-00009"))
    for account in (merging, funding):
        assert decide_fork(account, cash_equity(account), CFG) is None
    for status in (AccountStatus.HALTED, AccountStatus.MERGED, AccountStatus.CLOSED):
        assert decide_fork(replace(rich, status=status), cash_equity(rich), CFG) is None
    assert decide_fork(replace(rich, status=AccountStatus.SAFE), cash_equity(rich), CFG) is not None


def test_children_are_named_by_the_parents_fork_count() -> None:
    parent = gained(main_account(), GEN, 20_000_000)
    assert child_id(parent) == "ACC-00001-F1"
    decision = decide_fork(parent, cash_equity(parent), CFG)
    assert decision is not None
    assert child_id(earmark(parent, decision)) == "ACC-00001-F2"


# --- earmark, open_child, confirm_fork -----------------------------------------------------------------


def test_earmark_takes_free_cash_only_and_a_rerun_changes_nothing() -> None:
    parent = gained(main_account(), GEN, 20_000_000)
    decision = decide_fork(parent, cash_equity(parent), CFG)
    assert decision is not None
    marked = earmark(parent, decision)
    before, after = parent.sleeve(GEN), marked.sleeve(GEN)
    assert after.cash_cents == before.cash_cents - decision.amount_cents
    assert after.buffer_cents == before.buffer_cents and after.contributed_cents == before.contributed_cents
    assert after.cash_cents >= after.buffer_cents
    assert dict(marked.lifecycle.earmarks) == {"ACC-00001-F1": decision.amount_cents}
    assert marked.lifecycle.forks_made == 1
    assert earmark(marked, decision) == marked  # the same decision again: set aside once
    assert money_in_system([marked]) == money_in_system([parent])


def test_a_fork_free_cash_cannot_cover_waits_and_changes_nothing() -> None:
    """Short puts secure most of Gen's cash: the surplus is there (marked equity), the free cash is not."""
    parent = gained(main_account(), GEN, 10_000_000)
    put = OptionContract("TSLA", date(2026, 12, 4), 250_00, OptionRight.PUT)
    gen = parent.sleeve(GEN)
    parent = replace(parent, sleeves={**parent.sleeves, GEN: replace(gen, positions={put: -10})})
    assert parent.sleeve(GEN).free_cents == 4_000_000  # 300,000 - 10,000 buffer - 250,000 collateral
    decision = decide_fork(parent, cash_equity(parent), CFG)
    assert decision is not None and decision.amount_cents == 7_000_000
    with pytest.raises(InsufficientFunds) as refused:
        earmark(parent, decision)
    assert refused.value.field == "amount_cents" and "Gen-Acc" in str(refused.value)
    exact = replace(decision, amount_cents=parent.sleeve(GEN).free_cents)  # all the free cash, never the buffer
    marked = earmark(parent, exact)
    assert marked.sleeve(GEN).free_cents == 0 and marked.sleeve(GEN).cash_cents > marked.sleeve(GEN).buffer_cents
    with pytest.raises(InsufficientFunds):
        earmark(parent, replace(exact, amount_cents=exact.amount_cents + 1))


def test_confirming_hands_the_earmark_to_the_child_once() -> None:
    parent = gained(main_account(), GEN, 20_000_000)
    decision = decide_fork(parent, cash_equity(parent), CFG)
    assert decision is not None
    parent = earmark(parent, decision)
    child, _ = open_child(parent, decision, buffer_pct=BUFFER, now=NOW)
    total = money_in_system([parent, child])
    assert total == 700_000 * DOLLAR  # the waiting child's cash is the parent's earmark, counted once
    confirmed_parent, confirmed_child = confirm_fork(parent, child)
    assert not confirmed_parent.lifecycle.earmarks and confirmed_child.lifecycle.funding_from is None
    assert money_in_system([confirmed_parent, confirmed_child]) == total
    with pytest.raises(Conflict) as twice:  # the second confirmation is refused
        confirm_fork(confirmed_parent, confirmed_child)
    assert twice.value.field == "child"
    with pytest.raises(Conflict) as stale:  # a stale child (still waiting) against the confirmed parent
        confirm_fork(confirmed_parent, child)
    assert stale.value.field == "earmarks"
    other = main_account("ACC-00002")
    with pytest.raises(Conflict):
        confirm_fork(other, child)  # not this child's parent
    short = replace(child, sleeves={**child.sleeves, GEN: replace(child.sleeve(GEN), cash_cents=0)})
    with pytest.raises(Conflict) as differ:
        confirm_fork(parent, short)
    assert differ.value.field == "earmarks"


# --- merges (A10) -----------------------------------------------------------------------------------


def lineage() -> dict[str, Account]:
    """ROOT -> MID -> LEAF, each trading."""
    root = main_account("ROOT-1")
    mid = main_account("ROOT-1-F1", parent_id="ROOT-1", lineage_id="ROOT-1")
    leaf = main_account("ROOT-1-F1-F1", parent_id="ROOT-1-F1", lineage_id="ROOT-1")
    return {a.account_id: a for a in (root, mid, leaf)}


@pytest.mark.parametrize("gone", [AccountStatus.MERGED, AccountStatus.CLOSED])
def test_merge_target_skips_a_parent_that_is_gone_to_the_nearest_trading_ancestor(gone: AccountStatus) -> None:
    accounts = lineage()
    leaf = accounts["ROOT-1-F1-F1"]
    assert merge_target(leaf, accounts) == "ROOT-1-F1"
    accounts["ROOT-1-F1"] = replace(accounts["ROOT-1-F1"], status=gone)
    assert merge_target(leaf, accounts) == "ROOT-1"
    accounts["ROOT-1"] = replace(accounts["ROOT-1"], status=AccountStatus.SAFE)  # SAFE still trades
    assert merge_target(leaf, accounts) == "ROOT-1"
    accounts["ROOT-1"] = replace(accounts["ROOT-1"], status=AccountStatus.CLOSED)
    assert merge_target(leaf, accounts) is None
    cfg = config(merge_threshold="50000")
    assert decide_merge(leaf, 10_000_000 * DOLLAR, accounts, cfg) is None  # nowhere to go: no merge
    assert merge_target(leaf, {"ROOT-1-F1-F1": leaf}) is None  # a parent the fleet no longer lists


def test_merge_target_survives_a_cycle_in_the_parent_links() -> None:
    a = main_account("AAA-1", parent_id="BBB-1")
    b = replace(main_account("BBB-1", parent_id="AAA-1"), status=AccountStatus.CLOSED)
    c = replace(a, status=AccountStatus.CLOSED)
    assert merge_target(main_account("CCC-1", parent_id="AAA-1"), {"AAA-1": c, "BBB-1": b}) is None


def test_a_fork_merges_at_its_threshold_into_its_parent() -> None:
    accounts = lineage()
    mid = accounts["ROOT-1-F1"]
    threshold = 500_000 * DOLLAR
    assert decide_merge(mid, threshold - 1, accounts, CFG) is None
    decision = decide_merge(mid, threshold, accounts, CFG)
    assert decision == MergeDecision("ROOT-1-F1", "ROOT-1", threshold, threshold)
    assert decide_merge(accounts["ROOT-1"], 10 * threshold, accounts, CFG) is None  # not a fork: never merges
    waiting = replace(mid, lifecycle=replace(mid.lifecycle, earmarks={"ROOT-1-F1-F2": 1}))
    assert decide_merge(waiting, threshold, accounts, CFG) is None  # its own fork finishes first
    funding = replace(mid, lifecycle=replace(mid.lifecycle, funding_from="ROOT-1"))
    assert decide_merge(funding, threshold, accounts, CFG) is None
    merging = start_merge(mid, decision)
    assert merging.lifecycle.merging_into == "ROOT-1"
    assert decide_merge(merging, threshold, accounts, CFG) is None  # started once
    assert decide_merge(replace(mid, status=AccountStatus.HALTED), threshold, accounts, CFG) is None


def test_merge_in_kind_is_refused_naming_the_setting() -> None:
    accounts = lineage()
    cfg = config(merge_policy="in_kind")
    with pytest.raises(ValidationFailed) as refused:
        decide_merge(accounts["ROOT-1-F1"], 600_000 * DOLLAR, accounts, cfg)
    assert refused.value.field == "lifecycle.merge_policy" and "liquidate" in str(refused.value)
    assert decide_merge(accounts["ROOT-1-F1"], 1, accounts, cfg) is None  # below the threshold: nothing to refuse


def test_a_merge_hands_all_cash_to_the_targets_com_acc_once() -> None:
    accounts = lineage()
    root, mid = accounts["ROOT-1"], gained(accounts["ROOT-1-F1"], GEN, 123_45)
    decision = decide_merge(mid, mid.cash_cents, {**accounts, mid.account_id: mid}, config(merge_threshold="50000"))
    assert decision is not None
    total = money_in_system([root, mid])
    merging = start_merge(mid, decision)
    with pytest.raises(Conflict):
        complete_merge_out(mid)  # never asked to merge
    held = replace(merging, sleeves={**merging.sleeves, COM: replace(merging.sleeve(COM), positions={_PUT: 1})})
    assert not is_flat(held)
    with pytest.raises(Conflict) as not_flat:
        complete_merge_out(held)
    assert not_flat.value.field == "positions"
    merged = complete_merge_out(merging)
    assert merged.status is AccountStatus.MERGED and merged.cash_cents == merged.buffer_cents == 0
    assert merged.lifecycle.merged_out_cents == mid.cash_cents
    assert money_in_system([root, merged]) == total  # in flight: counted on the merged child
    with pytest.raises(Conflict):
        receive_merge(root, mid, buffer_pct=BUFFER)  # not merged yet
    received = receive_merge(root, merged, buffer_pct=BUFFER)
    com_before, com = root.sleeve(COM), received.sleeve(COM)
    assert com.cash_cents == com_before.cash_cents + mid.cash_cents
    assert com.contributed_cents == com_before.contributed_cents + mid.cash_cents
    assert com.buffer_cents == com_before.buffer_cents + -(-mid.cash_cents * 5 // 100)
    assert all(received.sleeve(k) == root.sleeve(k) for k in (GEN, REV, STARLAB))
    assert received.lifecycle.merges_received == ("ROOT-1-F1",)
    assert money_in_system([received, merged]) == total
    assert receive_merge(received, merged, buffer_pct=BUFFER) == received  # booked once
    movement = merge_movement(root, merged, NOW)
    assert movement.kind is MovementKind.DEPOSIT and movement.amount_cents == mid.cash_cents
    assert dict(movement.by_sleeve) == {COM: mid.cash_cents} and movement.seq == root.movements + 1
    assert "ROOT-1-F1" in movement.reason


def test_completing_a_merge_twice_keeps_the_merged_cash() -> None:
    accounts = lineage()
    mid = accounts["ROOT-1-F1"]
    merged = complete_merge_out(start_merge(mid, MergeDecision(mid.account_id, "ROOT-1", 1, 1)))
    total = money_in_system([accounts["ROOT-1"], merged])
    try:
        again = complete_merge_out(merged)
    except Conflict:
        return  # refusing the second completion is as good
    assert again.lifecycle.merged_out_cents == mid.cash_cents
    assert money_in_system([accounts["ROOT-1"], again]) == total


def test_the_tax_kept_back_at_a_fork_is_not_forked_at_the_next_evaluation() -> None:
    cfg = config(gen_fork_threshold="1000")
    parent, _, decision = forked(main_account(), 1_000_000 * DOLLAR // 100, cfg)  # a 10,000 gain, 7,000 forked
    assert decision.amount_cents == 700_000
    # No new gain since the fork: only the 3,000 estimated tax on the forked gain is left above the basis.
    assert decide_fork(parent, cash_equity(parent), cfg) is None


# --- evaluation cadence ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cadence", "on", "first_of_week", "first_of_month", "due"),
    [
        ("quarterly", date(2026, 1, 2), True, True, True),
        ("quarterly", date(2026, 4, 1), False, True, True),
        ("quarterly", date(2026, 7, 1), False, True, True),
        ("quarterly", date(2026, 10, 1), False, True, True),
        ("quarterly", date(2026, 2, 2), True, True, False),  # not a quarter's month
        ("quarterly", date(2026, 4, 2), False, False, False),  # the quarter's month, not its first session
        ("weekly", date(2026, 12, 7), True, False, True),
        ("weekly", date(2026, 12, 8), False, False, False),
        ("weekly", date(2026, 12, 1), False, True, False),  # a month's first session mid-week
        ("daily", date(2026, 12, 8), False, False, True),
        ("daily", date(2026, 12, 9), False, False, True),
    ],
)
def test_evaluation_due_by_cadence(
    cadence: str, on: date, first_of_week: bool, first_of_month: bool, due: bool
) -> None:
    rules = LifecycleConfig(fork_cadence=cadence)
    assert evaluation_due(on, first_of_week=first_of_week, first_of_month=first_of_month, config=rules) is due


def test_quarterly_evaluation_follows_the_configured_months() -> None:
    rules = LifecycleConfig(reinvest_months=[3, 6, 9, 12])
    assert evaluation_due(date(2026, 3, 2), first_of_week=True, first_of_month=True, config=rules)
    assert not evaluation_due(date(2026, 4, 1), first_of_week=False, first_of_month=True, config=rules)


# --- conservation under random sequences (property) -------------------------------------------------

PROPERTY_CFG = config(gen_fork_threshold="100", rev_fork_threshold="300", merge_threshold="100")


class ForksAndMerges(RuleBasedStateMachine):
    """Random deposits, fills, forks and merges over a small fleet of cash-only accounts."""

    def __init__(self) -> None:
        super().__init__()
        # Two roots, one of them with a funded child (so that merges are possible from the first step).
        root, child, _ = forked(main_account("ACC-00001", 10_000 * DOLLAR), 2_000 * DOLLAR, PROPERTY_CFG)
        other = main_account("ACC-00002", 2_500 * DOLLAR)
        self.accounts: dict[str, Account] = {a.account_id: a for a in (root, child, other)}
        self.expected = money_in_system(self.accounts.values())
        assert self.expected == 14_500 * DOLLAR

    # --- choosing accounts ---
    def _pick(self, accounts: list[Account], pick: int) -> Account | None:
        return sorted(accounts, key=lambda a: a.account_id)[pick % len(accounts)] if accounts else None

    def _trading(self) -> list[Account]:
        """Accounts that trade and take money: linked, funded, not merging, not gone."""
        return [
            a
            for a in self.accounts.values()
            if a.status in (AccountStatus.ACTIVE, AccountStatus.SAFE)
            and a.lifecycle.funding_from is None
            and a.lifecycle.merging_into is None
        ]

    def _waiting(self) -> list[Account]:
        return [a for a in self.accounts.values() if a.lifecycle.funding_from]

    def _merging(self) -> list[Account]:
        return [a for a in self.accounts.values() if a.lifecycle.merging_into and a.status is not AccountStatus.MERGED]

    def _unbooked(self) -> list[Account]:
        return [
            a
            for a in self.accounts.values()
            if a.status is AccountStatus.MERGED
            and a.account_id not in self.accounts[a.lifecycle.merging_into or ""].lifecycle.merges_received
        ]

    def _put(self, *accounts: Account) -> None:
        for account in accounts:
            self.accounts[account.account_id] = account

    def _assert_buffers_kept(self, before: dict[str, Account]) -> None:
        for account in self.accounts.values():
            for kind, balance in account.sleeves.items():
                assert balance.cash_cents >= balance.buffer_cents >= 0, (account.account_id, kind, balance)
                old = before.get(account.account_id)
                if old is not None and account.status is not AccountStatus.MERGED:
                    assert balance.buffer_cents >= old.sleeve(kind).buffer_cents  # never released into trading

    # --- money in and out of the system ---
    @rule(pick=st.integers(0, 99), amount=st.integers(1, 5_000 * DOLLAR))
    def deposit(self, pick: int, amount: int) -> None:
        account = self._pick(self._trading(), pick)
        if account is None:
            return
        funded, _ = deposit(account, amount, weights=CFG.allocation.weights(), buffer_pct=BUFFER, now=NOW)
        self._put(funded)
        self.expected += amount

    @rule(pick=st.integers(0, 99), sleeve=st.sampled_from([GEN, REV, COM]), cents=st.integers(-(10**7), 10**7))
    def fill(self, pick: int, sleeve: SleeveKind, cents: int) -> None:
        """Premium in, or a loss out of the sleeve's free cash (a fill never touches the buffer)."""
        account = self._pick(self._trading(), pick)
        if account is None:
            return
        cents = max(cents, -account.sleeve(sleeve).free_cents)
        self._put(gained(account, sleeve, cents))
        self.expected += cents

    # --- forks ---
    @rule(pick=st.integers(0, 99))
    def fork_decided(self, pick: int) -> None:
        parent = self._pick(self._trading(), pick)
        if parent is None:
            return
        decision = decide_fork(parent, cash_equity(parent), PROPERTY_CFG)
        if decision is not None:
            self._fork(parent, decision)

    @rule(pick=st.integers(0, 99), sleeve=st.sampled_from([GEN, REV]), share=st.floats(0.001, 1.2))
    def fork_any_amount(self, pick: int, sleeve: SleeveKind, share: float) -> None:
        """An earmark of any amount up to beyond the sleeve's cash: only free cash may go."""
        parent = self._pick([a for a in self._trading() if not a.lifecycle.earmarks], pick)
        if parent is None or parent.sleeve(sleeve).cash_cents <= 0:
            return
        amount = max(1, int(parent.sleeve(sleeve).cash_cents * share))
        weights = dict(CFG.allocation.weights()) if sleeve is REV else {GEN: Decimal("0.5"), COM: Decimal("0.5")}
        decision = ForkDecision(parent.account_id, child_id(parent), sleeve, amount, weights, amount, 1)
        self._fork(parent, decision)

    def _fork(self, parent: Account, decision: ForkDecision) -> None:
        before = dict(self.accounts)
        free = parent.sleeve(decision.sleeve).free_cents
        try:
            marked = earmark(parent, decision)
        except InsufficientFunds:
            assert decision.amount_cents > free
            event("fork refused: free cash short")
            return  # the fork waits; nothing changed (the function is pure: the parent is as it was)
        assert decision.amount_cents <= free
        assert earmark(marked, decision) == marked  # a re-run sets aside nothing more
        child, funding = open_child(marked, decision, buffer_pct=BUFFER, now=NOW)
        assert funding.amount_cents == child.cash_cents == decision.amount_cents
        assert child.account_id not in self.accounts
        self._put(marked, child)
        self._assert_buffers_kept(before)
        event("forked")

    @precondition(lambda self: self._waiting())
    @rule(pick=st.integers(0, 99))
    def link_and_confirm(self, pick: int) -> None:
        child = self._pick(self._waiting(), pick)
        if child is None:
            return
        if child.brokerage_id is None:
            child = link_broker(child, f"DU{2_000_000 + len(self.accounts)}", pattern=PATTERN)
        parent = self.accounts[child.lifecycle.funding_from or ""]
        before = dict(self.accounts)
        parent, confirmed = confirm_fork(parent, child)
        self._put(parent, confirmed)
        with pytest.raises(Conflict):
            confirm_fork(parent, confirmed)
        self._assert_buffers_kept(before)
        event("fork confirmed")

    # --- merges ---
    @rule(pick=st.integers(0, 99))
    def merge_start(self, pick: int) -> None:
        child = self._pick([a for a in self._trading() if a.parent_id], pick)
        if child is None:
            return
        decision = decide_merge(child, child.cash_cents, self.accounts, PROPERTY_CFG)
        if decision is not None:
            assert self.accounts[decision.into_id].status in (AccountStatus.ACTIVE, AccountStatus.SAFE)
            self._put(start_merge(child, decision))
            event("merge started")

    @precondition(lambda self: self._merging())
    @rule(pick=st.integers(0, 99))
    def merge_out(self, pick: int) -> None:
        child = self._pick(self._merging(), pick)
        if child is None:
            return
        before = dict(self.accounts)
        merged = complete_merge_out(child)
        assert merged.lifecycle.merged_out_cents == child.cash_cents
        self._put(merged)
        self._assert_buffers_kept(before)
        event("merged out")

    @precondition(lambda self: self._unbooked())
    @rule(pick=st.integers(0, 99))
    def merge_in(self, pick: int) -> None:
        child = self._pick(self._unbooked(), pick)
        if child is None:
            return
        before = dict(self.accounts)
        target = self.accounts[child.lifecycle.merging_into or ""]
        received = receive_merge(target, child, buffer_pct=BUFFER)
        assert receive_merge(received, child, buffer_pct=BUFFER) == received  # booked once
        self._put(received)
        self._assert_buffers_kept(before)
        event("merge received")

    @rule(pick=st.integers(0, 99), status=st.sampled_from([AccountStatus.HALTED, AccountStatus.CLOSED]))
    def stop(self, pick: int, status: AccountStatus) -> None:
        """An operator halts or closes an account (its money stays counted where it is)."""
        account = self._pick([a for a in self._trading() if not a.lifecycle.earmarks], pick)
        if account is not None:
            self._put(replace(account, status=status))

    def teardown(self) -> None:
        """Carry every saga in flight to its end: the money is all still there, and nothing is in flight."""
        while self._waiting() or self._merging() or self._unbooked():
            for step, pending in ((self.link_and_confirm, self._waiting), (self.merge_out, self._merging)):
                if pending():
                    step(0)
            if self._unbooked():
                self.merge_in(0)
            self.money_is_conserved_to_the_cent()
            self.no_buffer_is_deployed()
        counted = sum(a.cash_cents for a in self.accounts.values())
        assert counted == self.expected  # at rest, money_in_system is just the cash of the accounts

    # --- invariants ---
    @invariant()
    def money_is_conserved_to_the_cent(self) -> None:
        assert money_in_system(self.accounts.values()) == self.expected

    @invariant()
    def no_buffer_is_deployed(self) -> None:
        for account in self.accounts.values():
            for balance in account.sleeves.values():
                assert balance.cash_cents >= balance.buffer_cents >= 0

    @invariant()
    def every_buffer_covers_its_share_of_the_capital_put_in(self) -> None:
        """Deposits, forks and merges each give the sleeve its 5 % buffer of the capital they bring."""
        for account in self.accounts.values():
            for balance in account.sleeves.values():
                assert balance.buffer_cents >= fraction_of(balance.contributed_cents, BUFFER)

    @invariant()
    def every_earmark_waits_in_exactly_one_child(self) -> None:
        waiting = {a.account_id: a for a in self.accounts.values() if a.lifecycle.funding_from}
        earmarked = {c: (p.account_id, v) for p in self.accounts.values() for c, v in p.lifecycle.earmarks.items()}
        assert set(waiting) == set(earmarked)
        for child_id_, (parent_id, cents) in earmarked.items():
            assert waiting[child_id_].lifecycle.funding_from == parent_id
            assert waiting[child_id_].cash_cents == cents


ForksAndMerges.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_forks_and_merges_conserve_money_and_buffers = ForksAndMerges.TestCase


@settings(max_examples=60, deadline=None)
@given(
    capital=st.integers(1_000 * DOLLAR, 2_000_000 * DOLLAR),
    gain=st.integers(-100_000 * DOLLAR, 1_000_000 * DOLLAR),
    growth=st.integers(-10_000 * DOLLAR, 100_000 * DOLLAR),
)
def test_a_fork_and_its_merge_return_every_cent(capital: int, gain: int, growth: int) -> None:
    """Parent forks its Gen surplus, the child grows (or loses), then merges back: every intermediate
    state holds the same money, and at the end the parent holds it all."""
    cfg = config(gen_fork_threshold="1000", merge_threshold="1000")
    start = main_account(capital_cents=capital)
    parent = gained(start, GEN, max(gain, -start.sleeve(GEN).free_cents))
    total = money_in_system([parent])
    decision = decide_fork(parent, cash_equity(parent), cfg)
    if decision is None:
        gen = parent.sleeve(GEN)
        assert surplus_cents(gen.cash_cents, gen.contributed_cents, cfg) < 1_000 * DOLLAR
        return
    states: list[list[Account]] = []
    marked = earmark(parent, decision)
    child, _ = open_child(marked, decision, buffer_pct=BUFFER, now=NOW)
    states.append([marked, child])
    linked = link_broker(child, "DU7000001", pattern=PATTERN)
    states.append([marked, linked])
    parent_after, child_after = confirm_fork(marked, linked)
    states.append([parent_after, child_after])
    for state in states:
        assert money_in_system(state) == total
    growth = max(growth, -child_after.sleeve(GEN).free_cents)
    grown = gained(child_after, GEN, growth)
    total += growth
    merge = decide_merge(grown, grown.cash_cents, {a.account_id: a for a in (parent_after, grown)}, cfg)
    if merge is None:
        assert grown.cash_cents < 1_000 * DOLLAR
        return
    merging = start_merge(grown, merge)
    merged = complete_merge_out(merging)
    received = receive_merge(parent_after, merged, buffer_pct=BUFFER)
    for state in ([parent_after, merging], [parent_after, merged], [received, merged]):
        assert money_in_system(state) == total
    assert received.cash_cents == total and merged.cash_cents == 0
    for account in (received, merged):
        assert all(b.cash_cents >= b.buffer_cents for b in account.sleeves.values())
