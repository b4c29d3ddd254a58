"""Pre-trade risk engine, kill switches and circuit breakers (domain-spec A6, A7, A13)."""

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alluse.application.broker_port import Side
from alluse.domain.accounts import AccountStatus
from alluse.domain.config import DeltaBand, default_config, effective_config
from alluse.domain.instruments import Equity, OptionContract, OptionRight
from alluse.domain.market import OptionQuote
from alluse.domain.risk import (
    BreakerInputs,
    BreakerKind,
    BreakerTrip,
    DenyReason,
    KillSwitches,
    OrderIntent,
    OrderSource,
    RiskContext,
    RiskDecision,
    StarlabGrant,
    TradingState,
    check,
    evaluate_breakers,
    starlab_action,
)
from alluse.domain.sleeves import SleeveKind

CFG = default_config()
BREAKERS = CFG.circuit_breakers
ACC = "ACC-1"
GEN, STARLAB = SleeveKind.GEN, SleeveKind.STARLAB
PUT = OptionContract("TSLA", date(2026, 11, 27), 25_000, OptionRight.PUT)  # $250 strike
CALL = OptionContract("TSLA", date(2026, 11, 27), 27_000, OptionRight.CALL)


def quote_for(contract: OptionContract, **changes: object) -> OptionQuote:
    base = OptionQuote(
        contract=contract,
        bid_cents=390,  # $3.90 on a $250 strike = 1.56 %, above Gen's 1.5 % floor
        ask_cents=400,  # spread 10c on a 3.95 mid = 2.53 %
        iv=0.6,
        delta=-0.45 if contract.right is OptionRight.PUT else 0.45,
        gamma=0.02,
        theta=-0.5,
        vega=0.1,
        open_interest=1_000,
        volume=5_000,
        underlying_price=252.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def short_put(**changes: object) -> OrderIntent:
    base = OrderIntent(
        account_id=ACC,
        sleeve=GEN,
        instrument=PUT,
        side=Side.SELL,
        quantity=2,  # $50,000 of collateral
        opens_risk=True,
        quote=quote_for(PUT),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def context(**changes: object) -> RiskContext:
    base = RiskContext(
        account_status=AccountStatus.ACTIVE,
        kill_switches=KillSwitches(),
        free_cash_cents=10_000_000,  # $100,000 deployable
        buffer_cents=500_000,
        cash_required_cents=0,
        delta_band=CFG.gen.delta_band,
        premium_floor_pct=CFG.gen.premium_floor_pct,
        sleeve_paused=False,
        tripped_breaker=None,
        starlab=StarlabGrant.from_config(CFG),
        blacklist=frozenset(CFG.circuit_breakers.blacklist),
        risk=CFG.risk,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def starlab_config() -> StarlabGrant:
    layer = {"allocation": {"gen": "0.30", "starlab": "0.10"}, "starlab": {"granted_clients": ["lab-1"]}}
    return StarlabGrant.from_config(effective_config(layer))


def starlab_put(**changes: object) -> OrderIntent:
    starlab: dict[str, object] = {
        "sleeve": STARLAB,
        "source": OrderSource.STARLAB,
        "starlab_client_id": "lab-1",
        "starlab_strategy_id": "DIS-7",
    }
    return short_put(**{**starlab, **changes})


TRIP = BreakerTrip(BreakerKind.CONSECUTIVE_LOSSES, "3 consecutive losing trades (limit 3)")

Case = Callable[[], tuple[OrderIntent, RiskContext]]

# One minimal departure from the valid short put per deny reason.
CASES: dict[DenyReason, Case] = {
    DenyReason.QUANTITY: lambda: (short_put(quantity=0), context()),
    DenyReason.STARLAB_NOT_GRANTED: lambda: (starlab_put(starlab_client_id="lab-2"), context(starlab=starlab_config())),
    DenyReason.STARLAB_LIMIT: lambda: (starlab_put(quantity=51), context(starlab=starlab_config())),
    DenyReason.ACCOUNT_NOT_ACTIVE: lambda: (short_put(), context(account_status=AccountStatus.MERGED)),
    DenyReason.KILL_SWITCH_HALTED: lambda: (
        short_put(),
        context(kill_switches=KillSwitches().with_symbol("TSLA", TradingState.HALTED)),
    ),
    DenyReason.KILL_SWITCH_REDUCING: lambda: (
        short_put(),
        context(kill_switches=KillSwitches().with_account(ACC, TradingState.REDUCING)),
    ),
    DenyReason.ACCOUNT_SAFE: lambda: (short_put(), context(account_status=AccountStatus.SAFE)),
    DenyReason.CIRCUIT_BREAKER: lambda: (short_put(), context(tripped_breaker=TRIP)),
    DenyReason.SLEEVE_PAUSED: lambda: (short_put(), context(sleeve_paused=True)),
    DenyReason.BLACKLISTED: lambda: (short_put(), context(blacklist=frozenset({"TSLA"}))),
    DenyReason.NOT_CASH_SECURED: lambda: (short_put(), context(free_cash_cents=4_000_000, buffer_cents=500_000)),
    DenyReason.NOT_COVERED: lambda: (
        short_put(instrument=CALL, quote=quote_for(CALL), limit_price_cents=420),
        context(uncovered_shares=100),
    ),
    DenyReason.BUFFER_BREACH: lambda: (short_put(), context(free_cash_cents=4_900_000, buffer_cents=500_000)),
    DenyReason.NO_QUOTE: lambda: (short_put(quote=None), context()),
    DenyReason.PREMIUM_FLOOR: lambda: (short_put(limit_price_cents=360), context()),  # 1.44 % < 1.5 %
    DenyReason.DELTA_BAND: lambda: (short_put(quote=quote_for(PUT, delta=-0.55)), context()),
    DenyReason.OPEN_INTEREST: lambda: (short_put(quote=quote_for(PUT, open_interest=499)), context()),
    DenyReason.SPREAD: lambda: (short_put(quote=quote_for(PUT, bid_cents=380, ask_cents=410)), context()),
    DenyReason.VOLUME: lambda: (short_put(quote=quote_for(PUT, volume=99)), context()),
    DenyReason.SIZE_VS_ADV: lambda: (short_put(avg_daily_volume=19), context()),  # 2 > 10 % of 19
}


def test_the_valid_order_is_allowed() -> None:
    assert check(short_put(), context()) == RiskDecision.allow()
    assert check(starlab_put(), context(starlab=starlab_config())).allowed


def test_every_deny_reason_has_a_case() -> None:
    assert set(CASES) == set(DenyReason)


@pytest.mark.parametrize("reason", list(DenyReason))
def test_each_deny_reason_is_reachable(reason: DenyReason) -> None:
    intent, ctx = CASES[reason]()
    decision = check(intent, ctx)
    assert (decision.allowed, decision.reason) == (False, reason), decision.message
    assert decision.message


def test_covered_call_with_enough_shares_is_allowed() -> None:
    call = short_put(instrument=CALL, quote=quote_for(CALL), limit_price_cents=420)
    assert check(call, context(uncovered_shares=200)).allowed


def test_buffer_boundary() -> None:
    assert check(short_put(), context(free_cash_cents=5_000_000)).allowed  # exactly the collateral
    assert check(short_put(), context(free_cash_cents=4_999_999)).reason is DenyReason.BUFFER_BREACH


def test_caller_cannot_understate_put_collateral() -> None:
    # cash_required_cents=0 from the caller, yet the engine computes strike × 100 × qty itself.
    decision = check(short_put(quantity=5), context(cash_required_cents=0))
    assert decision.reason is DenyReason.NOT_CASH_SECURED
    assert "$125,000.00" in decision.message


def test_messages_name_the_number_and_the_limit() -> None:
    intent, ctx = CASES[DenyReason.SPREAD]()
    assert check(intent, ctx).message == "spread 7.59 % of mid exceeds 5 %"
    intent, ctx = CASES[DenyReason.PREMIUM_FLOOR]()
    assert check(intent, ctx).message == "premium 1.44 % of strike is below the 1.5 % floor (no human approval)"
    intent, ctx = CASES[DenyReason.SIZE_VS_ADV]()
    assert "10.53 % of average daily volume 19, above 10 %" in check(intent, ctx).message


def test_liquidity_limits_are_inclusive() -> None:
    edge = quote_for(PUT, open_interest=500, volume=100, bid_cents=390, ask_cents=410)  # spread 5 % exactly
    assert check(short_put(quote=edge, avg_daily_volume=20), context()).allowed  # 2 = 10 % of 20


def test_delta_band_edges_are_inclusive_and_exact() -> None:
    band = DeltaBand(min=Decimal("0.30"), max=Decimal("0.40"))  # 0.3 as a float is below Decimal 0.30
    for delta in (-0.3, -0.4):
        assert check(short_put(quote=quote_for(PUT, delta=delta)), context(delta_band=band)).allowed
    assert check(short_put(quote=quote_for(PUT, delta=-0.41)), context(delta_band=band)).reason is (
        DenyReason.DELTA_BAND
    )


def test_option_adv_defaults_to_the_quote_volume() -> None:
    thin = quote_for(PUT, volume=100)
    assert check(short_put(quote=thin, quantity=10), context(free_cash_cents=30_000_000)).allowed
    assert check(short_put(quote=thin, quantity=11), context(free_cash_cents=30_000_000)).reason is (
        DenyReason.SIZE_VS_ADV
    )


def test_quote_for_another_contract_is_no_quote() -> None:
    other = quote_for(replace(PUT, strike_cents=24_000))
    assert check(short_put(quote=other), context()).reason is DenyReason.NO_QUOTE


def test_premium_floor_follows_the_hitl_policy() -> None:
    low = short_put(limit_price_cents=360)
    approved = replace(low, premium_below_floor_approved=True)
    assert check(approved, context()).allowed  # policy "ask": the human said yes
    assert check(approved, context(premium_floor_policy="skip")).reason is DenyReason.PREMIUM_FLOOR
    assert check(low, context(premium_floor_policy="place")).allowed
    assert check(low, context(premium_floor_pct=Decimal(0))).allowed  # Com-Acc: no floor


def test_shares_need_adv_and_are_never_shorted() -> None:
    shares = short_put(instrument=Equity("AAPL"), side=Side.BUY, quantity=100, quote=None, limit_price_cents=20_000)
    assert check(shares, context()).reason is DenyReason.NO_QUOTE
    assert check(replace(shares, avg_daily_volume=50_000_000), context()).allowed
    short = replace(shares, side=Side.SELL, avg_daily_volume=50_000_000)
    assert check(short, context()).reason is DenyReason.NOT_COVERED
    # Bought at the limit: $20,000 of cash, priced by the engine.
    assert check(replace(shares, avg_daily_volume=50_000_000), context(free_cash_cents=1_999_999)).reason is (
        DenyReason.BUFFER_BREACH
    )


# --------------------------------------------------------------------------------------------------
# Exits, SAFE and kill-switch scopes
# --------------------------------------------------------------------------------------------------


def buy_to_close(**changes: object) -> OrderIntent:
    return short_put(side=Side.BUY, opens_risk=False, **changes)


def test_symbol_halted_beats_global_active() -> None:
    switches = KillSwitches().with_symbol("TSLA", TradingState.HALTED)
    assert switches.global_state is TradingState.ACTIVE
    assert switches.effective_state(ACC, GEN, "TSLA") is TradingState.HALTED
    assert switches.effective_state(ACC, GEN, "NVDA") is TradingState.ACTIVE
    decision = check(buy_to_close(), context(kill_switches=switches))
    assert decision.reason is DenyReason.KILL_SWITCH_HALTED
    assert decision.message == "kill switch HALTED at symbol TSLA"


def test_the_most_restrictive_scope_wins() -> None:
    switches = (
        KillSwitches()
        .with_global(TradingState.REDUCING)
        .with_sleeve(ACC, GEN, TradingState.HALTED)
        .with_symbol("TSLA", TradingState.ACTIVE)
    )
    assert switches.effective_state(ACC, GEN, "TSLA") is TradingState.HALTED
    assert switches.effective_state(ACC, SleeveKind.REV, "TSLA") is TradingState.REDUCING
    assert switches.effective_state("ACC-2", GEN, "TSLA") is TradingState.REDUCING
    assert switches.with_global(TradingState.ACTIVE).effective_state("ACC-2", GEN, "TSLA") is TradingState.ACTIVE


def test_kill_switches_are_immutable() -> None:
    base = KillSwitches()
    halted = base.with_account(ACC, TradingState.HALTED)
    assert base.effective_state(ACC, GEN, "TSLA") is TradingState.ACTIVE
    assert halted.effective_state(ACC, GEN, "TSLA") is TradingState.HALTED
    with pytest.raises(TypeError):
        halted.accounts[ACC] = TradingState.ACTIVE  # type: ignore[index]
    assert halted.with_account(ACC, TradingState.ACTIVE).accounts == {}


def test_reducing_allows_closing_orders_only() -> None:
    ctx = context(kill_switches=KillSwitches().with_global(TradingState.REDUCING))
    assert check(buy_to_close(), ctx).allowed
    assert check(short_put(), ctx).reason is DenyReason.KILL_SWITCH_REDUCING


def test_safe_allows_exits_and_refuses_entries() -> None:
    ctx = context(account_status=AccountStatus.SAFE)
    assert check(short_put(), ctx).reason is DenyReason.ACCOUNT_SAFE
    assert check(buy_to_close(), ctx).allowed


def test_exits_skip_entry_checks_but_not_halted() -> None:
    hostile = context(
        free_cash_cents=0,
        buffer_cents=0,
        tripped_breaker=TRIP,
        sleeve_paused=True,
        blacklist=frozenset({"TSLA"}),
        delta_band=DeltaBand(min=Decimal("0.10"), max=Decimal("0.20")),
    )
    wide = quote_for(PUT, bid_cents=100, ask_cents=900, open_interest=0, volume=0)
    assert check(buy_to_close(quote=wide), hostile).allowed
    assert check(buy_to_close(quote=None), hostile).allowed  # a stop at market needs no quote
    assert check(buy_to_close(), context(account_status=AccountStatus.HALTED)).reason is DenyReason.KILL_SWITCH_HALTED
    assert check(buy_to_close(), context(account_status=AccountStatus.CLOSED)).reason is DenyReason.ACCOUNT_NOT_ACTIVE


# --------------------------------------------------------------------------------------------------
# STAR-LAB (A13)
# --------------------------------------------------------------------------------------------------


def test_starlab_needs_capital_before_a_grant_counts() -> None:
    layer = {"starlab": {"granted_clients": ["lab-1"]}}  # allocation.starlab stays 0
    assert StarlabGrant.from_config(effective_config(layer)).granted_clients == frozenset()
    assert check(starlab_put(), context()).reason is DenyReason.STARLAB_NOT_GRANTED


def test_starlab_trades_only_its_sleeve_and_names_its_strategy() -> None:
    ctx = context(starlab=starlab_config())
    assert check(starlab_put(sleeve=GEN), ctx).reason is DenyReason.STARLAB_NOT_GRANTED
    assert check(starlab_put(starlab_strategy_id=None), ctx).reason is DenyReason.STARLAB_NOT_GRANTED


def test_starlab_actions_and_limits() -> None:
    ctx = context(starlab=starlab_config())
    assert starlab_action(starlab_put()) == "SELL_TO_OPEN_PUT"
    assert check(starlab_put(quantity=50), replace(ctx, free_cash_cents=200_000_000)).allowed
    buy_put = starlab_put(side=Side.BUY)  # BUY_TO_OPEN_PUT is not a STAR-LAB action
    decision = check(buy_put, ctx)
    assert decision.reason is DenyReason.STARLAB_LIMIT
    assert "BUY_TO_OPEN_PUT" in decision.message


# --------------------------------------------------------------------------------------------------
# Circuit breakers (A6)
# --------------------------------------------------------------------------------------------------


def inputs(**changes: object) -> BreakerInputs:
    base = BreakerInputs(
        closed_trade_pnls_cents=(10_000,),
        start_of_day_equity_cents=50_000_000,
        equity_now_cents=50_000_000,
        open_position_atr_levels=(0, 1),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_no_breaker_on_a_quiet_day() -> None:
    assert evaluate_breakers(inputs(), BREAKERS) is None


def test_consecutive_losses_trip_at_three() -> None:
    assert evaluate_breakers(inputs(closed_trade_pnls_cents=(500, -1, -1)), BREAKERS) is None
    trip = evaluate_breakers(inputs(closed_trade_pnls_cents=(500, -1, -1, -1)), BREAKERS)
    assert trip is not None and trip.kind is BreakerKind.CONSECUTIVE_LOSSES
    # A break-even trade ends the streak.
    assert evaluate_breakers(inputs(closed_trade_pnls_cents=(-1, -1, 0, -1, -1)), BREAKERS) is None


def test_daily_drawdown_trips_at_five_percent() -> None:
    assert evaluate_breakers(inputs(equity_now_cents=47_500_001), BREAKERS) is None  # one cent short of 5 %
    trip = evaluate_breakers(inputs(equity_now_cents=47_500_000), BREAKERS)
    assert trip is not None and trip.kind is BreakerKind.DAILY_DRAWDOWN
    assert "5 %" in trip.message
    assert evaluate_breakers(inputs(start_of_day_equity_cents=0, equity_now_cents=-5), BREAKERS) is None


def test_simultaneous_breaches_trip_at_two_l2_positions() -> None:
    assert evaluate_breakers(inputs(open_position_atr_levels=(2, 1, 1)), BREAKERS) is None
    trip = evaluate_breakers(inputs(open_position_atr_levels=(2, 1, 3)), BREAKERS)
    assert trip is not None and trip.kind is BreakerKind.SIMULTANEOUS_BREACHES


def test_breaker_thresholds_come_from_config() -> None:
    strict = BREAKERS.model_copy(update={"consecutive_losses": 1, "breach_min_level": 3})
    assert evaluate_breakers(inputs(closed_trade_pnls_cents=(-1,)), strict) is not None
    assert evaluate_breakers(inputs(open_position_atr_levels=(2, 2, 3)), strict) is None


# --------------------------------------------------------------------------------------------------
# Property: an opening short put is never allowed beyond the sleeve's free cash
# --------------------------------------------------------------------------------------------------


@given(
    strike_cents=st.integers(min_value=1, max_value=100_000),
    quantity=st.integers(min_value=-2, max_value=60),
    free_vs_collateral=st.integers(min_value=-2_000_000, max_value=2_000_000),
    buffer=st.integers(min_value=0, max_value=5_000_000),
    caller_says=st.integers(min_value=0, max_value=50_000_000),
    limit=st.one_of(st.none(), st.integers(min_value=1, max_value=5_000)),
    approved=st.booleans(),
    floor_policy=st.sampled_from(["skip", "ask", "place"]),
    adv=st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
)
def test_opening_short_put_never_exceeds_free_cash(
    strike_cents: int,
    quantity: int,
    free_vs_collateral: int,
    buffer: int,
    caller_says: int,
    limit: int | None,
    approved: bool,
    floor_policy: str,
    adv: int | None,
) -> None:
    put = replace(PUT, strike_cents=strike_cents)
    collateral = strike_cents * 100 * quantity
    intent = short_put(
        instrument=put,
        quantity=quantity,
        quote=quote_for(put),
        limit_price_cents=limit,
        premium_below_floor_approved=approved,
        avg_daily_volume=adv,
    )
    ctx = context(
        free_cash_cents=collateral + free_vs_collateral,  # around the edge, where mistakes live
        buffer_cents=buffer,
        cash_required_cents=caller_says,
        premium_floor_policy=floor_policy,
    )
    if check(intent, ctx).allowed:
        assert collateral <= ctx.free_cash_cents
