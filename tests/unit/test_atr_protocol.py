"""ATR protocol: levels, level changes with their action plans, the L3 pause, and rolls for a credit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alluse.domain.atr_protocol import (
    AtrLevel,
    PositionKind,
    ProtectedPosition,
    SleevePause,
    adverse_move,
    atr_level,
    effective_atr,
    entries_paused,
    evaluate,
    find_roll,
    measure,
    next_week_start,
    plan_roll,
    roll_terms,
    sleeve_pauses,
)
from alluse.domain.config import AllUseConfig, AtrProtocolConfig, RollWindow, default_config, effective_config
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.market import OptionChain
from alluse.domain.sleeves import SleeveKind

PUT, CALL = OptionRight.PUT, OptionRight.CALL
AT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # Wednesday 10:00 in New York
TODAY = date(2026, 11, 25)
FRI = date(2026, 11, 27)  # the current contracts' expiry
MON, TUE, NEXT_FRI = date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 4)  # +3, +4, +7 days
PROTOCOL = AtrProtocolConfig()
CONFIG = default_config()


def config_with(**atr_protocol: Any) -> AllUseConfig:
    return effective_config({"atr_protocol": atr_protocol})


def position(
    *,
    right: OptionRight = PUT,
    strike: int = 100_00,
    entry: float = 100.0,
    quantity: int = -5,
    sleeve: SleeveKind = SleeveKind.REV,
    level: AtrLevel = AtrLevel.L0,
    credit: int = 100_000,
    ticker: str = "AAPL",
    position_id: str = "P1",
    account_id: str = "ACC-1",
) -> ProtectedPosition:
    contract = OptionContract(ticker, FRI, strike, right)
    return ProtectedPosition(position_id, account_id, sleeve, contract, quantity, entry, credit, level)


Row = tuple[date, int, OptionRight, int, int, float]  # expiry, strike cents, right, bid, ask, delta


def chain_of(rows: Sequence[Row], underlying: str = "AAPL") -> OptionChain:
    n = len(rows)
    ints = np.full(n, 1000, dtype=np.int64)
    zeros = np.zeros(n)
    return OptionChain(
        underlying=underlying,
        as_of=AT,
        spot=95.0,
        expiry=np.array([r[0] for r in rows], dtype="datetime64[D]"),
        strike_cents=np.array([r[1] for r in rows], dtype=np.int64),
        is_call=np.array([r[2] is CALL for r in rows], dtype=np.bool_),
        bid_cents=np.array([r[3] for r in rows], dtype=np.int64),
        ask_cents=np.array([r[4] for r in rows], dtype=np.int64),
        iv=np.full(n, 0.3),
        delta=np.array([r[5] for r in rows], dtype=np.float64),
        gamma=zeros,
        theta=zeros,
        vega=zeros,
        open_interest=ints,
        volume=ints,
    )


CURRENT_PUT: Row = (FRI, 100_00, PUT, 290, 300, -0.60)  # bought back at 3.00
REV_BAND = (Decimal("0.30"), Decimal("0.40"))


def rev_roll(rows: Sequence[Row], pos: ProtectedPosition | None = None, **kwargs: Any) -> Any:
    config = kwargs.pop("config", CONFIG)
    return find_roll(pos or position(), chain_of([CURRENT_PUT, *rows]), TODAY, REV_BAND, 3, 4, config, **kwargs)


# --------------------------------------------------------------------------------------------------
# Levels
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("move", "level"),
    [
        (0.0, AtrLevel.L0),
        (math.nextafter(2.5, 0), AtrLevel.L0),
        (2.5, AtrLevel.L1),
        (math.nextafter(5.0, 0), AtrLevel.L1),
        (5.0, AtrLevel.L2),
        (math.nextafter(7.5, 0), AtrLevel.L2),
        (7.5, AtrLevel.L3),
        (50.0, AtrLevel.L3),
    ],
)
def test_levels_start_exactly_at_1_2_3_atr(move: float, level: AtrLevel) -> None:
    assert atr_level(move, 2.5, PROTOCOL) is level


def test_levels_follow_configured_multiples() -> None:
    protocol = config_with(l1="0.5", l2="1.0", l3="1.5").atr_protocol
    assert [atr_level(m, 2.0, protocol) for m in (0.9, 1.0, 2.0, 3.0)] == [
        AtrLevel.L0,
        AtrLevel.L1,
        AtrLevel.L2,
        AtrLevel.L3,
    ]


@pytest.mark.parametrize(("move", "atr"), [(1.0, 0.0), (1.0, -1.0), (1.0, math.nan), (-0.1, 1.0), (math.nan, 1.0)])
def test_atr_level_refuses_meaningless_inputs(move: float, atr: float) -> None:
    with pytest.raises(ValidationFailed):
        atr_level(move, atr, PROTOCOL)


def test_adverse_move_direction() -> None:
    assert adverse_move(PositionKind.SHORT_PUT, 100.0, 95.0) == 5.0
    assert adverse_move(PositionKind.SHORT_PUT, 100.0, 105.0) == 0.0  # in the put's favour
    assert adverse_move(PositionKind.SHORT_CALL, 100.0, 105.0) == 5.0
    assert adverse_move(PositionKind.SHORT_CALL, 100.0, 95.0) == 0.0


def test_reference_entry_versus_strike() -> None:
    put = position(strike=95_00, entry=100.0)  # sold 5 below spot
    by_entry = measure(put, 94.0, 2.0, PROTOCOL)
    by_strike = measure(put, 94.0, 2.0, config_with(reference="strike").atr_protocol)
    assert (by_entry.reference_price, by_entry.adverse_move, by_entry.level) == (100.0, 6.0, AtrLevel.L3)
    assert (by_strike.reference_price, by_strike.adverse_move, by_strike.level) == (95.0, 1.0, AtrLevel.L0)
    assert by_entry.atr_multiple == 3.0


def test_short_call_escalates_on_a_rise() -> None:
    call = position(right=CALL, strike=105_00, entry=100.0, sleeve=SleeveKind.COM)
    assert measure(call, 105.0, 2.5, PROTOCOL).level is AtrLevel.L2
    assert measure(call, 90.0, 2.5, PROTOCOL).level is AtrLevel.L0
    assert measure(call, 107.0, 2.5, config_with(reference="strike").atr_protocol).level is AtrLevel.L0


def test_effective_atr_fallbacks() -> None:
    assert effective_atr(3.0, 2.0, 200.0, PROTOCOL) == 3.0
    assert effective_atr(None, 2.0, 200.0, PROTOCOL) == pytest.approx(2.2)  # last valid × 1.1
    assert effective_atr(math.nan, 2.0, 200.0, PROTOCOL) == pytest.approx(2.2)
    assert effective_atr(0.0, None, 200.0, PROTOCOL) == pytest.approx(4.0)  # 2 % of price
    assert effective_atr(None, None, 200.0, config_with(atr_missing_fallback_pct="0.03").atr_protocol) == (
        pytest.approx(6.0)
    )
    assert effective_atr(None, 2.0, 200.0, config_with(stale_multiplier="1.5").atr_protocol) == pytest.approx(3.0)
    with pytest.raises(ValidationFailed):
        effective_atr(None, None, 0.0, PROTOCOL)


def test_only_short_options_are_protected() -> None:
    with pytest.raises(ValidationFailed, match="short"):
        position(quantity=1)


LEVELS = [AtrProtocolConfig(), config_with(l1="0.5", l2="1.5", l3="4").atr_protocol]


@given(
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=1e-3, max_value=1e4),
    st.sampled_from(LEVELS),
)
def test_level_is_monotone_in_the_adverse_move(a: float, b: float, atr: float, protocol: AtrProtocolConfig) -> None:
    low, high = sorted((a, b))
    assert atr_level(low, atr, protocol) <= atr_level(high, atr, protocol)


# --------------------------------------------------------------------------------------------------
# Level changes
# --------------------------------------------------------------------------------------------------


def scan(positions: Sequence[ProtectedPosition], price: float, config: AllUseConfig = CONFIG) -> Any:
    return evaluate(positions, {"AAPL": price}, {"AAPL": 2.5}, AT, config)


def test_only_changed_levels_are_reported() -> None:
    calm = position(position_id="calm")
    already = position(position_id="already", level=AtrLevel.L1)
    assert scan([calm, already], 97.5) == [scan([calm], 97.5)[0]]  # calm L0→L1; already stays L1
    assert scan([calm], 99.0) == []


def test_de_escalation_is_reported_with_low_priority() -> None:
    [change] = scan([position(level=AtrLevel.L2)], 99.0)
    assert (change.from_level, change.to_level, change.escalated) == (AtrLevel.L2, AtrLevel.L0, False)
    assert change.priority == "LOW"
    assert change.action.action == "none"
    assert "Routine monitoring: scan every 15 min." in change.plan.steps


@pytest.mark.parametrize(
    ("price", "level", "priority", "action", "automatic"),
    [
        (97.5, AtrLevel.L1, "MEDIUM", "alert", False),
        (95.0, AtrLevel.L2, "HIGH", "roll_or_close", True),
        (92.5, AtrLevel.L3, "CRITICAL", "close", True),
    ],
)
def test_change_carries_priority_action_and_multiple(
    price: float, level: AtrLevel, priority: str, action: str, automatic: bool
) -> None:
    [change] = scan([position()], price)
    assert (change.to_level, change.priority, change.action.action, change.action.automatic) == (
        level,
        priority,
        action,
        automatic,
    )
    assert change.atr_multiple == int(level)
    assert change.at == AT
    assert (change.plan.level, change.plan.action, change.plan.automatic) == (level, action, automatic)


def test_priorities_come_from_config() -> None:
    louder = config_with(priorities={"l1": "HIGH", "l2": "CRITICAL"})
    [l1], [l2] = scan([position()], 97.5, louder), scan([position()], 95.0, louder)
    assert (l1.priority, l2.priority) == ("HIGH", "CRITICAL")


def test_a_jump_is_one_change() -> None:
    [change] = scan([position()], 80.0)
    assert (change.from_level, change.to_level) == (AtrLevel.L0, AtrLevel.L3)


def test_l1_plan_prepares_the_roll() -> None:
    steps = scan([position()], 97.5)[0].plan.steps
    assert steps[0] == "Watch the position closely."
    assert steps[1].startswith("Prepare (do not yet place) the roll: Look for a roll down/out")
    assert "L2 (Recovery) starts at underlying ≤ $95.00 (2×ATR)." in steps
    assert steps[-1].startswith("Needs a human")


def test_l2_plan_rolls_for_a_credit_else_closes() -> None:
    plan = scan([position()], 95.0)[0].plan
    roll, fallback, watch, who = plan.steps
    assert "roll down/out" in roll and "net credit" in roll and "|Δ| 0.30–0.40" in roll
    assert "expiring 3–4 days after 2026-11-27" in roll and "strike at or below $100.00" in roll
    assert fallback == "If no such roll exists: Buy to close 5 AAPL  261127P00100000."
    assert watch == "L3 (Preservation) starts at underlying ≤ $92.50 (3×ATR)."
    assert who == "Runs automatically."
    assert "L0→L2" in plan.summary and "2.00×ATR" in str(plan)


def test_l2_plan_for_a_call_rolls_up() -> None:
    call = position(right=CALL, strike=105_00, sleeve=SleeveKind.COM)
    roll = scan([call], 105.0)[0].plan.steps[0]
    assert "roll up/out" in roll and "strike at or above $105.00" in roll and "|Δ| 0.20–0.25" in roll


def test_l3_plan_closes_and_pauses_the_sleeve() -> None:
    steps = scan([position()], 92.5)[0].plan.steps
    assert steps == (
        "Buy to close 5 AAPL  261127P00100000.",
        "No new entries in Rev-Acc of ACC-1 until next week (2026-11-30).",
        "Runs automatically.",
    )


def test_manual_actions_say_so() -> None:
    config = config_with(auto_action={"l2": {"action": "close", "automatic": False}})
    [change] = scan([position()], 95.0, config)
    assert change.plan.steps == (
        "Buy to close 5 AAPL  261127P00100000.",
        "Needs a human: approve or act (auto-action off).",
    )


def test_missing_atr_falls_back_to_pct_of_price() -> None:
    [change] = evaluate([position()], {"AAPL": 96.0}, {}, AT, CONFIG)  # ATR = 2 % × 96 = 1.92
    assert change.reading.atr == pytest.approx(1.92)
    assert change.to_level is AtrLevel.L2


def test_missing_price_is_a_data_gap() -> None:
    with pytest.raises(MarketDataGap, match="MSFT"):
        evaluate([position(), position(ticker="MSFT")], {"AAPL": 99.0, "MSFT": math.nan}, {}, AT, CONFIG)


# --------------------------------------------------------------------------------------------------
# L3 pause
# --------------------------------------------------------------------------------------------------


def test_l3_pauses_the_sleeve_until_next_week() -> None:
    first, second, other = (
        position(position_id="a"),
        position(position_id="b"),
        position(position_id="c", sleeve=SleeveKind.GEN),
    )
    changes = scan([first, second, other], 92.0)
    pauses = sleeve_pauses(changes, PROTOCOL)
    assert pauses == [
        SleevePause("ACC-1", SleeveKind.REV, AT, date(2026, 11, 30), "a"),
        SleevePause("ACC-1", SleeveKind.GEN, AT, date(2026, 11, 30), "c"),
    ]
    assert entries_paused(pauses, "ACC-1", SleeveKind.REV, date(2026, 11, 27))
    assert not entries_paused(pauses, "ACC-1", SleeveKind.REV, date(2026, 11, 30))
    assert not entries_paused(pauses, "ACC-1", SleeveKind.COM, date(2026, 11, 27))


def test_no_pause_below_l3_or_when_disabled() -> None:
    assert sleeve_pauses(scan([position()], 95.0), PROTOCOL) == []
    assert sleeve_pauses(scan([position(level=AtrLevel.L3)], 95.0), PROTOCOL) == []  # de-escalation
    config = config_with(l3_pauses_until_next_week=False)
    changes = scan([position()], 92.0, config)
    assert sleeve_pauses(changes, config.atr_protocol) == []
    assert not any("No new entries" in step for step in changes[0].plan.steps)


def test_next_week_starts_on_monday_new_york_time() -> None:
    assert next_week_start(datetime(2026, 11, 29, 12, 0)) == date(2026, 11, 30)  # Sunday
    assert next_week_start(datetime(2026, 11, 30, 3, 0, tzinfo=UTC)) == date(2026, 11, 30)  # still Sunday in NY
    assert next_week_start(datetime(2026, 11, 30, 15, 0, tzinfo=UTC)) == date(2026, 12, 7)


# --------------------------------------------------------------------------------------------------
# Roll for a credit
# --------------------------------------------------------------------------------------------------


def test_roll_picks_the_best_credit_inside_the_rules() -> None:
    rows: list[Row] = [
        (MON, 95_00, PUT, 340, 350, -0.35),  # +3 days: 2000 cents × 5 ... = 20 000
        (TUE, 95_00, PUT, 360, 370, -0.38),  # +4 days: 30 000, the best valid one
        (TUE, 105_00, PUT, 900, 910, -0.39),  # strike up: not a roll down
        (TUE, 90_00, PUT, 400, 410, -0.45),  # outside the delta band
        (NEXT_FRI, 95_00, PUT, 500, 510, -0.36),  # +7 days: outside the 3–4 day window
        (FRI, 90_00, PUT, 700, 710, -0.35),  # same expiry: not out
        (TUE, 95_00, CALL, 990, 999, 0.36),  # wrong right
    ]
    plan = rev_roll(rows)
    assert plan is not None
    assert plan.open_contract == OptionContract("AAPL", TUE, 95_00, PUT)
    assert (plan.close_contract, plan.close_price_cents) == (position().contract, 300)
    assert (plan.open_price_cents, plan.open_delta, plan.quantity) == (360, -0.38, 5)
    assert plan.net_credit_cents == (360 - 300) * 100 * 5
    assert plan.position_id == "P1"


def test_roll_ties_go_to_the_nearer_expiry_then_the_safer_strike() -> None:
    nearer = rev_roll([(TUE, 95_00, PUT, 360, 370, -0.35), (MON, 95_00, PUT, 360, 370, -0.35)])
    assert nearer is not None and nearer.open_contract.expiry == MON
    safer = rev_roll([(MON, 95_00, PUT, 360, 370, -0.35), (MON, 90_00, PUT, 360, 370, -0.31)])
    assert safer is not None and safer.open_contract.strike_cents == 90_00


def test_roll_keeps_the_same_strike_allowed_and_band_edges_inclusive() -> None:
    plan = rev_roll([(MON, 100_00, PUT, 301, 310, -0.40)])
    assert plan is not None and plan.net_credit_cents == 500


def test_call_rolls_up_and_out() -> None:
    call = position(right=CALL, strike=105_00, quantity=-2, sleeve=SleeveKind.COM)
    rows: list[Row] = [
        (FRI, 105_00, CALL, 290, 300, 0.70),
        (NEXT_FRI, 100_00, CALL, 600, 610, 0.24),  # strike down: not for a call
        (NEXT_FRI, 110_00, CALL, 320, 330, 0.22),
        (NEXT_FRI, 115_00, CALL, 320, 330, 0.20),  # same credit, safer strike
    ]
    band = (Decimal("0.20"), Decimal("0.25"))
    plan = find_roll(call, chain_of(rows), TODAY, band, 1, 7, CONFIG)
    assert plan is not None
    assert plan.open_contract == OptionContract("AAPL", NEXT_FRI, 115_00, CALL)
    assert plan.net_credit_cents == 20 * 100 * 2


def test_no_roll_without_a_credit() -> None:
    assert rev_roll([(MON, 95_00, PUT, 300, 310, -0.35), (TUE, 90_00, PUT, 250, 260, -0.32)]) is None


def test_no_roll_when_nothing_is_in_the_band() -> None:
    assert rev_roll([(MON, 95_00, PUT, 500, 510, -0.45), (TUE, 90_00, PUT, 450, 460, -0.25)]) is None
    assert rev_roll([(MON, 95_00, PUT, 500, 510, math.nan)]) is None


def test_no_roll_without_a_later_expiry() -> None:
    assert rev_roll([(FRI, 95_00, PUT, 500, 510, -0.35)]) is None


def test_roll_cost_limit_when_a_debit_is_allowed() -> None:
    # Credit received 100 000 cents; 50 % → a debit of at most 50 000 = 1.00 per share on 5 contracts.
    at_limit: Row = (MON, 95_00, PUT, 200, 210, -0.35)  # (2.00 − 3.00) × 100 × 5 = −50 000
    over: Row = (MON, 95_00, PUT, 199, 210, -0.35)  # −50 500
    assert rev_roll([at_limit]) is None  # A5 default: a credit is required
    plan = rev_roll([at_limit], require_net_credit=False)
    assert plan is not None and plan.net_credit_cents == -50_000
    assert rev_roll([over], require_net_credit=False) is None
    tighter = config_with(max_roll_cost_pct_of_credit="0.25")
    assert rev_roll([at_limit], require_net_credit=False, config=tighter) is None
    credit_wins = rev_roll([at_limit, (TUE, 95_00, PUT, 301, 310, -0.35)], require_net_credit=False)
    assert credit_wins is not None and credit_wins.net_credit_cents == 500


def test_roll_needs_a_quote_for_the_current_contract() -> None:
    chain = chain_of([(MON, 95_00, PUT, 500, 510, -0.35)])
    with pytest.raises(MarketDataGap, match="no ask"):
        find_roll(position(), chain, TODAY, REV_BAND, 3, 4, CONFIG)
    with pytest.raises(ValidationFailed, match="chain is for MSFT"):
        find_roll(position(), chain_of([CURRENT_PUT], "MSFT"), TODAY, REV_BAND, 3, 4, CONFIG)
    with pytest.raises(ValidationFailed, match="expired"):
        find_roll(position(), chain_of([CURRENT_PUT]), date(2026, 11, 28), REV_BAND, 3, 4, CONFIG)


def test_roll_terms_come_from_the_sleeve() -> None:
    rev = roll_terms(SleeveKind.REV, PUT, CONFIG)
    assert (rev.delta_band, rev.min_extension_days, rev.max_extension_days) == (REV_BAND, 3, 4)
    assert roll_terms(SleeveKind.GEN, CALL, CONFIG).delta_band == (Decimal("0.40"), Decimal("0.50"))
    red = roll_terms(SleeveKind.GEN, PUT, CONFIG, delta_shift=CONFIG.week_mode.red_delta_shift)
    assert red.delta_band == (Decimal("0.35"), Decimal("0.45"))
    custom = config_with(roll={"rev": {"min_days": 5, "max_days": 9}, "require_net_credit": False})
    assert roll_terms(SleeveKind.REV, PUT, custom).max_extension_days == 9
    with pytest.raises(ValidationFailed):
        roll_terms(SleeveKind.STARLAB, PUT, CONFIG)
    with pytest.raises(ValueError, match="min_days"):
        RollWindow(min_days=4, max_days=3)


def test_plan_roll_uses_the_sleeve_rules() -> None:
    chain = chain_of([CURRENT_PUT, (MON, 95_00, PUT, 340, 350, -0.35), (NEXT_FRI, 95_00, PUT, 500, 510, -0.35)])
    plan = plan_roll(position(), chain, TODAY, CONFIG)
    assert plan is not None and plan.open_contract.expiry == MON  # Rev: +3–4 days only
    wide = config_with(roll={"rev": {"min_days": 1, "max_days": 7}})
    wider = plan_roll(position(), chain, TODAY, wide)
    assert wider is not None and wider.open_contract.expiry == NEXT_FRI


def test_l2_plan_names_the_debit_limit_when_debits_are_allowed() -> None:
    debits = config_with(roll={"require_net_credit": False})
    [change] = evaluate([position()], {"AAPL": 95.0}, {"AAPL": 2.5}, AT, debits)
    assert "or a net debit of at most 50% of the original credit $1,000.00" in change.plan.steps[0]
