"""The protocol's memory of an account and the rules that move it (A5, A6): watches, protected positions,
level changes and the L3 pause, closed trades, the circuit breakers and SAFE with its release policy."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alluse.domain.accounts import (
    Account,
    AccountStatus,
    ProtocolState,
    SleeveBalance,
    Watch,
)
from alluse.domain.atr_protocol import AtrLevel, LevelChange, evaluate
from alluse.domain.brokerage import Execution, Settlement, SettlementKind, Side
from alluse.domain.config import AllUseConfig, CircuitBreakersConfig, default_config, effective_config
from alluse.domain.errors import MarketDataGap
from alluse.domain.instruments import Equity, Instrument, OptionContract, OptionRight
from alluse.domain.ledger import book_execution, book_settlement
from alluse.domain.protection import (
    PROTECTED_SLEEVES,
    ProtectivePurpose,
    apply_level_changes,
    breaker_trip,
    closed_trade_pnl,
    go_safe,
    protected_positions,
    record_closings,
    release_safe,
    safe_release_due,
    short_options,
    sleeve_paused,
    start_day,
    sync_watches,
    unwatched_underlyings,
    watch_key,
)
from alluse.domain.risk import BreakerKind
from alluse.domain.sleeves import SleeveKind
from tests.fakes import linked_account

CFG = default_config()
BREAKERS = CFG.circuit_breakers
GEN, REV, COM, STARLAB = SleeveKind.GEN, SleeveKind.REV, SleeveKind.COM, SleeveKind.STARLAB
PUT, CALL = OptionRight.PUT, OptionRight.CALL
NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # Thursday 10:00 in New York
THU, FRI, SAT, SUN = date(2026, 12, 3), date(2026, 12, 4), date(2026, 12, 5), date(2026, 12, 6)
MON, NEXT_MON = date(2026, 11, 30), date(2026, 12, 7)
TSLA_PUT = OptionContract("TSLA", FRI, 200_00, PUT)
NVDA_PUT = OptionContract("NVDA", FRI, 150_00, PUT)
AAPL_CALL = OptionContract("AAPL", FRI, 230_00, CALL)


def _record(account: Account, pnls: list[int], breakers: CircuitBreakersConfig) -> Account:
    """Whole trades: each P&L closes its own position flat."""
    return record_closings(account, [(f"GEN:T{n}", pnl, True) for n, pnl in enumerate(pnls)], breakers)[0]


def test_a_position_closed_in_parts_is_one_trade_with_the_parts_pnl() -> None:
    parts = [("GEN:X", -100, False), ("GEN:X", -150, False), ("REV:Y", 40, True), ("GEN:X", -50, True)]
    account, ended = record_closings(active_account(), parts[:2], BREAKERS)
    assert ended == [] and account.protocol.closing_pnls_cents == {"GEN:X": -250}
    account, ended = record_closings(account, parts[2:], BREAKERS)
    assert ended == [40, -300]
    assert account.protocol.trade_pnls_cents == (40, -300) and account.protocol.closing_pnls_cents == {}


def active_account() -> Account:
    """A funded, broker-linked ACTIVE account with no positions."""
    return linked_account(NOW)


def holding(account: Account, sleeve: SleeveKind, instrument: Instrument, quantity: int, cost_cents: int) -> Account:
    """The account with `quantity` of `instrument` in `sleeve` at `cost_cents` (a short's cost is minus its credit)."""
    balance = account.sleeve(sleeve)
    balance = replace(
        balance,
        positions={**balance.positions, instrument: quantity},
        costs={**balance.costs, instrument: cost_cents},
    )
    return replace(account, sleeves={**account.sleeves, sleeve: balance})


def with_protocol(account: Account, **state: Any) -> Account:
    return replace(account, protocol=replace(account.protocol, **state))


def short_tsla() -> Account:
    """Gen sold 4 TSLA puts for $1.80 (a $720 credit)."""
    return holding(active_account(), GEN, TSLA_PUT, -4, -720_00)


def config_with(**sections: Any) -> AllUseConfig:
    return effective_config(sections)


# --------------------------------------------------------------------------------------------------
# Watches follow the short options
# --------------------------------------------------------------------------------------------------


def test_only_the_protocol_sleeves_short_options_are_watched() -> None:
    account = short_tsla()
    account = holding(account, REV, AAPL_CALL, -2, -300_00)
    account = holding(account, COM, NVDA_PUT, 3, 450_00)  # long: not protected
    account = holding(account, COM, Equity("NVDA"), 300, 45_000_00)  # shares: not protected
    account = holding(account, STARLAB, NVDA_PUT, -1, -150_00)  # STAR-LAB directs its own exits
    assert set(PROTECTED_SLEEVES) == {GEN, REV, COM}
    assert sorted(short_options(account), key=lambda s: s[0].value) == [(GEN, TSLA_PUT, -4), (REV, AAPL_CALL, -2)]
    assert unwatched_underlyings(account) == {"TSLA", "AAPL"}


def test_a_new_short_option_is_watched_from_its_entry_price() -> None:
    synced = sync_watches(short_tsla(), {"TSLA": 201_37})
    assert dict(synced.protocol.watches) == {watch_key(GEN, TSLA_PUT): Watch(201_37, 0)}
    assert watch_key(GEN, TSLA_PUT) == "GEN:" + TSLA_PUT.symbol
    assert unwatched_underlyings(synced) == set()


def test_an_existing_watch_keeps_its_entry_and_level_and_nothing_changed_is_the_same_account() -> None:
    key = watch_key(GEN, TSLA_PUT)
    account = with_protocol(short_tsla(), watches={key: Watch(200_00, 2)})
    synced = sync_watches(account, {"TSLA": 180_00})  # a later price never moves the reference
    assert synced is account
    assert synced.protocol.watches[key] == Watch(200_00, 2)


def test_a_position_that_is_gone_is_no_longer_watched() -> None:
    gone = watch_key(GEN, NVDA_PUT)
    kept = watch_key(GEN, TSLA_PUT)
    account = with_protocol(short_tsla(), watches={gone: Watch(150_00, 3), kept: Watch(200_00, 1)})
    synced = sync_watches(account, {})
    assert dict(synced.protocol.watches) == {kept: Watch(200_00, 1)}


@pytest.mark.parametrize("prices", [{}, {"TSLA": 0}, {"TSLA": -5}, {"NVDA": 150_00}])
def test_a_new_short_option_without_an_entry_price_is_a_market_data_gap(prices: dict[str, int]) -> None:
    with pytest.raises(MarketDataGap):
        sync_watches(short_tsla(), prices)


# --------------------------------------------------------------------------------------------------
# Protected positions
# --------------------------------------------------------------------------------------------------


def test_protected_positions_take_the_credit_from_the_sleeve_costs_and_the_level_from_the_watch() -> None:
    account = holding(short_tsla(), REV, AAPL_CALL, -2, -300_00)
    account = with_protocol(
        account, watches={watch_key(GEN, TSLA_PUT): Watch(201_50, 1), watch_key(REV, AAPL_CALL): Watch(225_00, 0)}
    )
    by_id = {p.position_id: p for p in protected_positions(account)}
    tsla = by_id[watch_key(GEN, TSLA_PUT)]
    assert (tsla.account_id, tsla.sleeve, tsla.contract, tsla.quantity) == ("ACC-00001", GEN, TSLA_PUT, -4)
    assert tsla.credit_received_cents == 720_00  # minus the short's cost: the premium taken in
    assert tsla.entry_underlying_price == pytest.approx(201.50)
    assert tsla.level is AtrLevel.L1
    aapl = by_id[watch_key(REV, AAPL_CALL)]
    assert (aapl.credit_received_cents, aapl.level, aapl.contracts) == (300_00, AtrLevel.L0, 2)


def test_an_unwatched_short_option_is_not_measured_and_a_credit_is_never_negative() -> None:
    account = holding(short_tsla(), REV, AAPL_CALL, -2, 10_00)  # a cost above zero: no credit to speak of
    account = with_protocol(account, watches={watch_key(REV, AAPL_CALL): Watch(225_00, 0)})
    [position] = protected_positions(account)  # TSLA has no watch yet (sync_watches comes first)
    assert position.contract == AAPL_CALL and position.credit_received_cents == 0


# --------------------------------------------------------------------------------------------------
# Level changes and the L3 pause
# --------------------------------------------------------------------------------------------------


def scan(account: Account, price: float, cfg: AllUseConfig = CFG, at: datetime = NOW) -> list[LevelChange]:
    """One scan of the account's positions, TSLA's ATR $4 (L1 at 196, L2 at 192, L3 at 188 from 200)."""
    return evaluate(protected_positions(account), {"TSLA": price, "NVDA": 150.0}, {"TSLA": 4.0}, at, cfg)


def watched_tsla() -> Account:
    return sync_watches(short_tsla(), {"TSLA": 200_00})


def test_level_changes_are_remembered_without_a_pause_below_l3() -> None:
    account = watched_tsla()
    changes = scan(account, 191.0)
    assert [c.to_level for c in changes] == [AtrLevel.L2]
    moved = apply_level_changes(account, changes, CFG)
    assert moved.protocol.watches[watch_key(GEN, TSLA_PUT)] == Watch(200_00, 2)
    assert moved.protocol.paused_until == {}
    assert not scan(moved, 191.0)  # the same level again is no change


def test_l3_pauses_the_sleeve_until_next_monday_and_no_other_sleeve() -> None:
    account = watched_tsla()
    paused = apply_level_changes(account, scan(account, 187.0), CFG)
    assert paused.protocol.watches[watch_key(GEN, TSLA_PUT)].level == 3
    assert dict(paused.protocol.paused_until) == {GEN: NEXT_MON}
    assert sleeve_paused(paused, GEN, THU) and sleeve_paused(paused, GEN, SUN)
    assert not sleeve_paused(paused, GEN, NEXT_MON)
    assert not sleeve_paused(paused, REV, THU) and not sleeve_paused(paused, COM, THU)


def test_a_longer_pause_is_never_shortened_by_a_later_l3() -> None:
    account = with_protocol(watched_tsla(), paused_until={GEN: date(2026, 12, 14)})
    paused = apply_level_changes(account, scan(account, 187.0), CFG)
    assert paused.protocol.paused_until[GEN] == date(2026, 12, 14)


def test_without_the_pause_setting_an_l3_pauses_nothing() -> None:
    cfg = config_with(atr_protocol={"l3_pauses_until_next_week": False})
    account = watched_tsla()
    moved = apply_level_changes(account, scan(account, 187.0, cfg), cfg)
    assert moved.protocol.watches[watch_key(GEN, TSLA_PUT)].level == 3
    assert moved.protocol.paused_until == {}


def test_no_change_leaves_the_account_as_it_was() -> None:
    account = watched_tsla()
    assert apply_level_changes(account, [], CFG) is account


# --------------------------------------------------------------------------------------------------
# Closed trades
# --------------------------------------------------------------------------------------------------


def fill(contract: OptionContract, side: Side, quantity: int, price_cents: int) -> Execution:
    return Execution("E1", "P1", "REF", contract, side, quantity, price_cents, 0, NOW)


def booked(account: Account, execution: Execution) -> tuple[SleeveBalance, SleeveBalance]:
    return account.sleeve(GEN), book_execution(account, GEN, execution).sleeve(GEN)


def sold_tsla() -> Account:
    """4 TSLA puts sold at $1.80 through the ledger (cost -$720)."""
    return book_execution(active_account(), GEN, fill(TSLA_PUT, Side.SELL, 4, 180))


def test_a_buy_back_at_a_loss_is_a_losing_trade() -> None:
    before, after = booked(sold_tsla(), fill(TSLA_PUT, Side.BUY, 4, 810))
    assert closed_trade_pnl(before, after, TSLA_PUT) == (180 - 810) * 100 * 4


def test_a_buy_back_at_a_gain_is_a_winning_trade() -> None:
    before, after = booked(sold_tsla(), fill(TSLA_PUT, Side.BUY, 4, 30))
    assert closed_trade_pnl(before, after, TSLA_PUT) == (180 - 30) * 100 * 4


def test_a_partial_close_realises_its_share() -> None:
    before, after = booked(sold_tsla(), fill(TSLA_PUT, Side.BUY, 1, 500))
    assert after.quantity(TSLA_PUT) == -3
    assert closed_trade_pnl(before, after, TSLA_PUT) == (180 - 500) * 100


def test_an_expiry_worthless_keeps_the_whole_premium() -> None:
    account = sold_tsla()
    settlement = Settlement(SettlementKind.EXPIRED_WORTHLESS, TSLA_PUT, -4, 0, 0, 205_00, NOW)
    after = book_settlement(account, settlement).sleeve(GEN)
    assert closed_trade_pnl(account.sleeve(GEN), after, TSLA_PUT) == 720_00


@pytest.mark.parametrize(
    ("execution", "instrument"),
    [
        (fill(TSLA_PUT, Side.SELL, 2, 150), TSLA_PUT),  # selling more adds to the short
        (fill(NVDA_PUT, Side.SELL, 2, 150), NVDA_PUT),  # an opening
        (fill(TSLA_PUT, Side.BUY, 4, 810), NVDA_PUT),  # a booking of another instrument
    ],
)
def test_a_booking_that_closes_nothing_is_no_trade(execution: Execution, instrument: Instrument) -> None:
    before, after = booked(sold_tsla(), execution)
    assert closed_trade_pnl(before, after, instrument) is None


def test_only_as_many_trades_as_the_loss_rule_reads_are_kept_oldest_first() -> None:
    account = _record(active_account(), [10, -20], BREAKERS)
    assert account.protocol.trade_pnls_cents == (10, -20)
    account = _record(account, [-30, -40], BREAKERS)
    assert account.protocol.trade_pnls_cents == (-20, -30, -40)  # consecutive_losses = 3
    two = CircuitBreakersConfig(consecutive_losses=2)
    assert _record(account, [5], two).protocol.trade_pnls_cents == (-40, 5)
    assert _record(account, [], BREAKERS) is account


# --------------------------------------------------------------------------------------------------
# Circuit breakers (A6)
# --------------------------------------------------------------------------------------------------


def test_three_consecutive_losses_trip_a_break_even_ends_the_streak() -> None:
    account = _record(active_account(), [-1, -1], BREAKERS)
    assert breaker_trip(account, 0, BREAKERS) is None
    three = _record(account, [-1], BREAKERS)
    trip = breaker_trip(three, 0, BREAKERS)
    assert trip is not None and trip.kind is BreakerKind.CONSECUTIVE_LOSSES
    assert breaker_trip(_record(three, [0], BREAKERS), 0, BREAKERS) is None


def test_the_daily_drawdown_is_measured_from_the_day_start_equity() -> None:
    account = start_day(active_account(), THU, 500_000_00)
    assert (account.protocol.day, account.protocol.day_start_equity_cents) == (THU, 500_000_00)
    assert breaker_trip(account, 475_000_01, BREAKERS) is None  # 4.99999 %
    trip = breaker_trip(account, 475_000_00, BREAKERS)  # 5 %
    assert trip is not None and trip.kind is BreakerKind.DAILY_DRAWDOWN
    assert breaker_trip(account, 600_000_00, BREAKERS) is None  # a gain is no drawdown


def test_without_a_day_start_no_drawdown_is_read() -> None:
    assert breaker_trip(active_account(), 1, BREAKERS) is None


@pytest.mark.parametrize(
    ("levels", "trips"),
    [((2, 1), False), ((2, 0, 0), False), ((2, 2), True), ((3, 2), True), ((3, 3, 0), True)],
)
def test_two_simultaneous_l2_plus_watches_trip(levels: tuple[int, ...], trips: bool) -> None:
    watches = {f"GEN:X{n}": Watch(100_00, level) for n, level in enumerate(levels)}
    trip = breaker_trip(with_protocol(active_account(), watches=watches), 0, BREAKERS)
    assert (trip is not None) == trips
    if trip is not None:
        assert trip.kind is BreakerKind.SIMULTANEOUS_BREACHES


# --------------------------------------------------------------------------------------------------
# SAFE and its release
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "on", "until"),
    [
        ("operator", THU, None),
        ("next_session", THU, FRI),
        ("next_session", FRI, SAT),  # steps run on sessions only: Monday's first step lifts it
        ("next_week", THU, NEXT_MON),
        ("next_week", MON, NEXT_MON),  # a Monday trip waits for the next Monday, not today
        ("next_week", SUN, NEXT_MON),
    ],
)
def test_go_safe_sets_the_release_day_of_the_policy(policy: str, on: date, until: date | None) -> None:
    breakers = CircuitBreakersConfig(safe_release=policy)
    account = _record(start_day(active_account(), on, 500_000_00), [-1, -2, -3], breakers)
    safe = go_safe(account, on, breakers)
    assert safe.status is AccountStatus.SAFE
    assert safe.protocol.safe_until == until
    assert safe.protocol.trade_pnls_cents == ()  # the streak that tripped it is spent
    assert safe.protocol.day_start_equity_cents == 500_000_00  # the rest of the memory is kept


def test_safe_is_released_on_its_day_and_not_before() -> None:
    breakers = CircuitBreakersConfig(safe_release="next_week")
    safe = go_safe(active_account(), THU, breakers)
    assert not safe_release_due(safe, FRI) and not safe_release_due(safe, SUN)
    assert safe_release_due(safe, NEXT_MON) and safe_release_due(safe, date(2026, 12, 9))
    released = release_safe(safe)
    assert released.status is AccountStatus.ACTIVE and released.protocol.safe_until is None
    assert not safe_release_due(released, NEXT_MON)


def test_an_operators_safe_is_never_released_by_the_protocol() -> None:
    safe = go_safe(active_account(), THU, BREAKERS)  # default policy: operator
    assert BREAKERS.safe_release == "operator"
    assert not safe_release_due(safe, date(2027, 6, 1))


def test_a_release_day_left_on_an_active_account_releases_nothing() -> None:
    account = with_protocol(active_account(), safe_until=THU)
    assert not safe_release_due(account, FRI)


def test_protective_purposes_fit_the_intent_id_purpose_field() -> None:
    assert {p.value for p in ProtectivePurpose} == {"STOP", "RLCL", "RLOP", "LIQD"}
    assert all(len(p.value) <= 4 for p in ProtectivePurpose)


# --------------------------------------------------------------------------------------------------
# Property: one watch per short option, entries never move
# --------------------------------------------------------------------------------------------------

TICKERS = ("AAPL", "MSFT", "NVDA", "TSLA")
contracts = st.builds(
    OptionContract,
    st.sampled_from(TICKERS),
    st.sampled_from([FRI, date(2026, 12, 11)]),
    st.integers(100, 300).map(lambda d: d * 100),
    st.sampled_from([PUT, CALL]),
)
holdings = st.lists(
    st.tuples(st.sampled_from([GEN, REV, COM, STARLAB]), contracts, st.integers(-5, 5).filter(bool)), max_size=8
)
watch_values = st.builds(Watch, st.integers(1, 500_00), st.integers(0, 3))


@given(
    held=holdings,
    old=st.dictionaries(st.integers(0, 7), watch_values, max_size=8),
    stale=st.dictionaries(st.text("ABC", min_size=1, max_size=3), watch_values, max_size=3),
    prices=st.fixed_dictionaries({t: st.integers(1, 500_00) for t in TICKERS}),
)
def test_sync_keeps_one_watch_per_short_option_and_never_moves_an_entry(
    held: list[tuple[SleeveKind, OptionContract, int]],
    old: dict[int, Watch],
    stale: dict[str, Watch],
    prices: dict[str, int],
) -> None:
    account = active_account()
    for sleeve, contract, quantity in held:
        account = holding(account, sleeve, contract, quantity, 0)
    shorts = short_options(account)
    keys = [watch_key(s, c) for s, c, _ in shorts]
    before = {keys[n]: w for n, w in old.items() if n < len(keys)}
    account = with_protocol(account, watches={**before, **{f"GEN:gone-{k}": w for k, w in stale.items()}})

    synced = sync_watches(account, prices)

    watches = synced.protocol.watches
    assert sorted(watches) == sorted(set(keys))  # exactly one per short option of a protocol sleeve
    assert all(s in PROTECTED_SLEEVES for s, _, _ in shorts)
    for sleeve, contract, _ in shorts:
        key = watch_key(sleeve, contract)
        expected = before.get(key, Watch(prices[contract.underlying], 0))
        assert watches[key] == expected
    assert sync_watches(synced, prices) is synced  # settled: a second sync changes nothing
    assert synced.protocol.paused_until == ProtocolState().paused_until
