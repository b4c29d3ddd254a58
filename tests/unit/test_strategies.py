"""Weekly entries per sleeve on hand-built option chains (domain-spec A4, B§3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alluse.application.broker_port import Side
from alluse.domain import strategies
from alluse.domain.config import AllUseConfig, default_config, effective_config
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.market import NEW_YORK, OptionChain
from alluse.domain.sleeves import SleeveKind
from alluse.domain.strategies import (
    EntryDecision,
    EntryPlan,
    SkipCode,
    SleeveBook,
    SleevePlan,
    choose_expiry,
    choose_strike_row,
    deployable_cents,
    in_entry_window,
    limit_price_cents,
    plan_entries,
)

GEN, REV, COM = SleeveKind.GEN, SleeveKind.REV, SleeveKind.COM
PUT, CALL = OptionRight.PUT, OptionRight.CALL
CFG = default_config()
GREEN, RED, CHOP = Decimal(0), Decimal("-0.05"), Decimal("-0.10")

MON = date(2026, 11, 30)
THU = date(2026, 12, 3)
TUE = date(2026, 12, 1)
FRI = date(2026, 12, 4)  # 1 DTE on Thursday, 4 DTE on Monday
NEXT_FRI = date(2026, 12, 11)  # 8 DTE on Thursday, 11 on Monday

Row = tuple[date, int, OptionRight, int, int, float]  # expiry, strike $, right, bid c, ask c, delta


def at(day: date, hh: int = 10, mm: int = 30, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=NEW_YORK)


def chain(underlying: str, rows: list[Row], spot: float = 100.0) -> OptionChain:
    n = len(rows)
    zeros = np.zeros(n)
    return OptionChain(
        underlying=underlying,
        as_of=at(MON),
        spot=spot,
        expiry=np.array([r[0] for r in rows], dtype="datetime64[D]"),
        strike_cents=np.array([r[1] * 100 for r in rows], dtype=np.int64),
        is_call=np.array([r[2] is CALL for r in rows]),
        bid_cents=np.array([r[3] for r in rows], dtype=np.int64),
        ask_cents=np.array([r[4] for r in rows], dtype=np.int64),
        iv=zeros + 0.5,
        delta=np.array([r[5] for r in rows]),
        gamma=zeros,
        theta=zeros,
        vega=zeros,
        open_interest=np.full(n, 1000, dtype=np.int64),
        volume=np.full(n, 500, dtype=np.int64),
    )


def puts(expiry: date, *strikes: tuple[int, float, int, int]) -> list[Row]:
    """(strike $, put delta, bid c, ask c) per strike."""
    return [(expiry, k, PUT, bid, ask, d) for k, d, bid, ask in strikes]


def calls(expiry: date, *strikes: tuple[int, float, int, int]) -> list[Row]:
    return [(expiry, k, CALL, bid, ask, d) for k, d, bid, ask in strikes]


# TSLA ≈ $400: 1-DTE puts around the money, plus a weekly that Gen must not pick.
TSLA = chain(
    "TSLA",
    puts(FRI, (380, -0.30, 450, 470), (390, -0.38, 640, 660), (400, -0.44, 800, 820), (405, -0.47, 900, 930))
    + puts(FRI, (420, -0.58, 1600, 1650))
    + puts(NEXT_FRI, (400, -0.45, 1500, 1550))
    + calls(FRI, (400, 0.52, 700, 720), (410, 0.45, 620, 640), (420, 0.36, 400, 420)),
    spot=402.0,
)
NVDA = chain(
    "NVDA",
    puts(FRI, (170, -0.30, 180, 190), (175, -0.39, 250, 260), (180, -0.46, 300, 310), (185, -0.56, 420, 430)),
    spot=181.0,
)
# AAPL ≈ $230: this Friday's weekly (4 DTE on Monday) and the next one (11 DTE, outside Rev's 0-7).
AAPL = chain(
    "AAPL",
    puts(FRI, (215, -0.22, 120, 125), (220, -0.31, 230, 240), (225, -0.36, 280, 290), (230, -0.48, 400, 410))
    + puts(NEXT_FRI, (225, -0.35, 450, 460))
    + calls(FRI, (235, 0.38, 300, 310), (240, 0.30, 220, 230), (245, 0.22, 150, 155), (250, 0.15, 80, 85)),
    spot=230.0,
)


def book(sleeve: SleeveKind, free: int = 20_000_000, buffer: int = 1_000_000, **kw: object) -> SleeveBook:
    return SleeveBook(sleeve=sleeve, free_cash_cents=free, buffer_cents=buffer, **kw)  # type: ignore[arg-type]


def only(result: SleevePlan, ticker: str) -> EntryPlan:
    found = [p for p in result.plans if p.contract.underlying == ticker]
    assert len(found) == 1, result
    return found[0]


def config(**layer: object) -> AllUseConfig:
    return effective_config(layer)


# --------------------------------------------------------------------------------------------------
# Strike and expiry choice per sleeve
# --------------------------------------------------------------------------------------------------


def test_gen_thursday_sells_the_one_dte_put_nearest_45_delta() -> None:
    result = plan_entries(GEN, book(GEN), {"TSLA": TSLA, "NVDA": NVDA}, at(THU), GREEN, CFG)

    tsla = only(result, "TSLA")
    assert tsla.contract == OptionContract("TSLA", FRI, 40_000, PUT)
    assert (tsla.side, tsla.delta, tsla.decision) == (Side.SELL, -0.44, EntryDecision.PLACE)
    # deployable 19,000,000c → 95 % = 18,050,000c → 9,025,000c per ticker (equal weights)
    assert tsla.quantity == 9_025_000 // 4_000_000 == 2
    assert tsla.cash_required_cents == 2 * 40_000 * 100
    assert tsla.limit_price_cents == 810  # mid 8.10 is on the 5-cent grid
    assert tsla.premium_pct == Decimal(810) / Decimal(40_000)
    assert tsla.below_floor is False and tsla.alert_reason is None

    nvda = only(result, "NVDA")
    assert (nvda.contract.strike_cents, nvda.delta) == (18_000, -0.46)
    assert nvda.quantity == 9_025_000 // 1_800_000 == 5
    assert result.skipped == {}


def test_rev_monday_sells_this_fridays_30_40_delta_put() -> None:
    result = plan_entries(REV, book(REV), {"AAPL": AAPL}, at(MON, 10, 0), GREEN, CFG)

    aapl = only(result, "AAPL")
    assert aapl.contract == OptionContract("AAPL", FRI, 22_500, PUT)  # -0.36 nearest 0.35; not the 11-DTE -0.35
    assert set(result.skipped) == {"MSFT", "AMZN", "GOOG"}
    assert {s.code for s in result.skipped.values()} == {SkipCode.NO_CHAIN}


def test_com_monday_sells_20_25_delta_calls_on_round_lots_only() -> None:
    msft = chain("MSFT", calls(FRI, (500, 0.22, 300, 310)) + puts(FRI, (480, -0.22, 300, 310)))
    held = book(COM, shares={"AAPL": 250, "MSFT": 99}, value_cents=200_000_000)
    result = plan_entries(COM, held, {"AAPL": AAPL, "MSFT": msft}, at(MON), GREEN, CFG)

    aapl = only(result, "AAPL")
    assert aapl.contract == OptionContract("AAPL", FRI, 24_500, CALL)  # 0.22 nearest 0.225
    assert (aapl.quantity, aapl.cash_required_cents) == (2, 0)  # 250 shares = 2 round lots
    # 99 MSFT shares are no round lot, and idle cash (19M of a 200M sleeve) is under the 20 % trigger: no puts
    assert result.skipped["MSFT"].code is SkipCode.IDLE_CASH_BELOW_TRIGGER
    assert len(result.plans) == 1


def test_com_sells_puts_with_its_own_band_when_idle_cash_is_high() -> None:
    held = book(COM, free=60_000_000, buffer=1_000_000, value_cents=100_000_000)
    result = plan_entries(COM, held, {"AAPL": AAPL}, at(MON), GREEN, CFG)

    aapl = only(result, "AAPL")
    assert (aapl.contract.right, aapl.delta) == (PUT, -0.22)  # Com's 20-25Δ, not Rev's 30-40Δ
    assert aapl.quantity == (59_000_000 * 95 // 100) // 6 // 2_150_000  # six Mag-6 tickers share it


def test_week_mode_shift_moves_the_strike_not_the_size() -> None:
    green = only(plan_entries(GEN, book(GEN), {"TSLA": TSLA}, at(THU), GREEN, CFG), "TSLA")
    chop = only(plan_entries(GEN, book(GEN), {"TSLA": TSLA}, at(THU), CHOP, CFG), "TSLA")

    assert (green.contract.strike_cents, green.delta) == (40_000, -0.44)
    assert (chop.contract.strike_cents, chop.delta) == (39_000, -0.38)  # band 0.30-0.40, middle 0.35
    assert chop.quantity == green.quantity == 2


def test_week_mode_shift_sizes_from_the_same_capital() -> None:
    # Same strike in every band: the quantity is identical whatever the week mode.
    flat = chain("NVDA", puts(FRI, (180, -0.30, 300, 310), (180, -0.45, 300, 310)))
    sizes = {
        shift: only(plan_entries(GEN, book(GEN), {"NVDA": flat}, at(THU), shift, CFG), "NVDA").quantity
        for shift in (GREEN, RED, CHOP)
    }
    assert set(sizes.values()) == {9_025_000 // 1_800_000}


def test_tie_goes_to_the_smaller_delta() -> None:
    tie = chain("X", puts(FRI, (90, -0.1875, 100, 110), (95, -0.3125, 150, 160)))
    row = choose_strike_row(tie, FRI, PUT, (Decimal("0.125"), Decimal("0.375")))
    assert row is not None and tie.contract(row).strike_cents == 9_000


def test_rows_without_a_bid_are_not_chosen() -> None:
    no_bid = chain("X", puts(FRI, (95, -0.45, 0, 20), (90, -0.41, 100, 110)))
    row = choose_strike_row(no_bid, FRI, PUT, (Decimal("0.40"), Decimal("0.50")))
    assert row is not None and no_bid.contract(row).strike_cents == 9_000


def test_expiry_is_the_nearest_inside_the_dte_range() -> None:
    assert choose_expiry(TSLA, THU, 0, 1) == FRI
    assert choose_expiry(TSLA, MON, 0, 1) is None
    assert choose_expiry(TSLA, MON, 5, 14) == NEXT_FRI


# --------------------------------------------------------------------------------------------------
# Sizing
# --------------------------------------------------------------------------------------------------


def test_ticker_weights_split_the_put_capital() -> None:
    weights = {"AAPL": "0.4", "MSFT": "0.3", "AMZN": "0.2", "GOOG": "0.1"}
    cfg = config(rev={"ticker_weights": weights})
    chains = {t: chain(t, puts(FRI, (100, -0.35, 100, 102))) for t in weights}
    result = plan_entries(REV, book(REV, free=101_000_000, buffer=1_000_000), chains, at(MON), GREEN, cfg)

    # 95 % of 100,000,000c = 95,000,000c; $100 strike secures 1,000,000c a contract
    assert {p.contract.underlying: p.quantity for p in result.plans} == {
        "AAPL": 38,
        "MSFT": 28,
        "AMZN": 19,
        "GOOG": 9,
    }


def test_size_zero_is_reported() -> None:
    result = plan_entries(GEN, book(GEN, free=3_000_000), {"TSLA": TSLA}, at(THU), GREEN, CFG)
    assert result.plans == []
    assert result.skipped["TSLA"].code is SkipCode.SIZE_ZERO


def test_buffer_is_never_deployable() -> None:
    assert deployable_cents(book(GEN, free=500, buffer=1_000)) == 0
    assert deployable_cents(book(GEN, free=5_000, buffer=1_000)) == 4_000


@settings(max_examples=200, deadline=None)
@given(
    free=st.integers(min_value=0, max_value=10**11),
    buffer_share=st.integers(min_value=0, max_value=100),
    strikes=st.lists(st.integers(min_value=1, max_value=2_000), min_size=4, max_size=4),
    weights=st.lists(st.integers(min_value=0, max_value=10), min_size=4, max_size=4).filter(lambda w: sum(w) > 0),
)
def test_puts_never_need_more_than_the_deployable_cash(
    free: int, buffer_share: int, strikes: list[int], weights: list[int]
) -> None:
    tickers = ["AAPL", "MSFT", "AMZN", "GOOG"]
    total = sum(weights)
    exact = [Decimal(w) / total for w in weights[:-1]]
    exact.append(Decimal(1) - sum(exact, Decimal(0)))
    cfg = config(rev={"ticker_weights": {t: str(w) for t, w in zip(tickers, exact, strict=True)}})
    chains = {t: chain(t, puts(FRI, (k, -0.35, 100, 110))) for t, k in zip(tickers, strikes, strict=True)}
    held = book(REV, free=free, buffer=free * buffer_share // 100)

    result = plan_entries(REV, held, chains, at(MON), GREEN, cfg)

    assert result.cash_required_cents <= deployable_cents(held)
    assert held.free_cash_cents - result.cash_required_cents >= held.buffer_cents
    for plan in result.plans:
        assert plan.quantity > 0


# --------------------------------------------------------------------------------------------------
# Covered-call phase (the wheel)
# --------------------------------------------------------------------------------------------------


def test_rev_holding_shares_sells_calls_not_puts_and_never_covers_twice() -> None:
    covered = OptionContract("AAPL", FRI, 24_000, CALL)
    held = book(REV, shares={"AAPL": 300}, open_short_options={covered: -1})
    result = plan_entries(REV, held, {"AAPL": AAPL}, at(MON), GREEN, CFG)

    aapl = only(result, "AAPL")
    assert (aapl.contract.right, aapl.delta, aapl.quantity) == (CALL, 0.38, 2)  # 3 lots, 1 already covered
    assert aapl.cash_required_cents == 0


def test_fully_covered_shares_get_nothing() -> None:
    covered = OptionContract("AAPL", FRI, 24_000, CALL)
    held = book(REV, shares={"AAPL": 100}, open_short_options={covered: -1})
    result = plan_entries(REV, held, {"AAPL": AAPL}, at(MON), GREEN, CFG)
    assert result.plans == []
    assert result.skipped["AAPL"].code is SkipCode.ALREADY_COVERED


def test_gen_assigned_shares_get_calls_on_monday_not_puts_on_thursday() -> None:
    held = book(GEN, shares={"TSLA": 200})
    thursday = plan_entries(GEN, held, {"TSLA": TSLA, "NVDA": NVDA}, at(THU), GREEN, CFG)
    assert thursday.skipped["TSLA"].code is SkipCode.OUTSIDE_WINDOW
    assert [p.contract.underlying for p in thursday.plans] == ["NVDA"]

    monday_chain = chain("TSLA", calls(FRI, (400, 0.52, 700, 720), (410, 0.46, 1500, 1520)))
    monday = plan_entries(GEN, held, {"TSLA": monday_chain}, at(MON), GREEN, CFG)
    tsla = only(monday, "TSLA")
    assert (tsla.contract.right, tsla.contract.strike_cents, tsla.quantity) == (CALL, 41_000, 2)


def test_an_open_put_is_not_sold_twice_and_its_share_goes_to_the_others() -> None:
    open_put = OptionContract("AAPL", FRI, 22_500, PUT)
    chains = {t: chain(t, puts(FRI, (100, -0.35, 100, 102))) for t in ("AAPL", "MSFT")}
    held = book(REV, free=41_000_000, buffer=1_000_000, open_short_options={open_put: -3})
    result = plan_entries(REV, held, chains, at(TUE), GREEN, CFG)

    assert result.skipped["AAPL"].code is SkipCode.PUT_ALREADY_OPEN
    assert only(result, "MSFT").quantity == 40_000_000 * 95 // 100 // 3 // 1_000_000  # 3 tickers still waiting


def test_an_entry_placed_this_week_is_not_planned_again_and_the_others_keep_their_size() -> None:
    chains = {t: chain(t, puts(FRI, (100, -0.35, 100, 102))) for t in ("AAPL", "MSFT")}
    fresh = plan_entries(REV, book(REV, free=41_000_000), chains, at(TUE), GREEN, CFG)
    placed = plan_entries(
        REV, book(REV, free=41_000_000, entered=frozenset({("AAPL", PUT)})), chains, at(TUE), GREEN, CFG
    )

    assert placed.skipped["AAPL"].code is SkipCode.ENTERED
    assert only(placed, "MSFT") == only(fresh, "MSFT")
    calls_entered = book(REV, free=41_000_000, entered=frozenset({("AAPL", CALL)}))  # the other right: planned
    assert only(plan_entries(REV, calls_entered, chains, at(TUE), GREEN, CFG), "AAPL") == only(fresh, "AAPL")


# --------------------------------------------------------------------------------------------------
# Premium floor and HITL policy
# --------------------------------------------------------------------------------------------------

THIN = chain("NVDA", puts(FRI, (180, -0.45, 200, 210)))  # 2.05 / 180 ≈ 1.14 % < Gen's 1.5 %


@pytest.mark.parametrize(
    ("policy", "decision"),
    [("skip", EntryDecision.SKIP), ("ask", EntryDecision.AWAIT_HUMAN), ("place", EntryDecision.PLACE)],
)
def test_below_the_premium_floor_the_hitl_policy_decides(policy: str, decision: EntryDecision) -> None:
    cfg = config(hitl={"premium_floor_policy": policy})
    result = plan_entries(GEN, book(GEN), {"NVDA": THIN}, at(THU), GREEN, cfg)

    plan = only(result, "NVDA")
    assert plan.below_floor is True
    assert plan.decision is decision
    assert plan.alert_priority == "HIGH"
    assert plan.alert_reason is not None and policy in plan.alert_reason
    assert result.to_place == ([plan] if decision is EntryDecision.PLACE else [])


def test_com_has_no_floor_by_default() -> None:
    cheap = chain("AAPL", calls(FRI, (245, 0.22, 1, 2)))
    result = plan_entries(COM, book(COM, shares={"AAPL": 100}), {"AAPL": cheap}, at(MON), GREEN, CFG)
    assert only(result, "AAPL").decision is EntryDecision.PLACE


@pytest.mark.parametrize(
    ("bid", "ask", "limit"),
    [(100, 103, 102), (305, 320, 315), (295, 304, 300), (310, 310, 310), (120, 100, 120)],
)
def test_limit_price_is_the_mid_rounded_up_onto_the_grid_never_below_the_bid(bid: int, ask: int, limit: int) -> None:
    quote = chain("TSLA", puts(FRI, (100, -0.45, bid, ask))).quote(0)
    assert limit_price_cents(quote, CFG.ticks) == limit


def test_limit_price_uses_the_configured_tick_grid() -> None:
    coarse = config(ticks={"option_large_tick_cents": 25})
    default = only(plan_entries(GEN, book(GEN), {"TSLA": TSLA}, at(THU), GREEN, CFG), "TSLA")
    wide = only(plan_entries(GEN, book(GEN), {"TSLA": TSLA}, at(THU), GREEN, coarse), "TSLA")
    assert (default.limit_price_cents, wide.limit_price_cents) == (810, 825)  # mid 810 rounded up


# --------------------------------------------------------------------------------------------------
# Entry window, pause, misuse
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (at(THU, 9, 59, 59), False),
        (at(THU, 10, 0), True),
        (at(THU, 10, 59, 59), True),
        (at(THU, 11, 0), False),  # the window is [start, end)
        (at(FRI, 10, 30), False),
        (datetime(2026, 12, 3, 15, 30, tzinfo=UTC), True),  # 10:30 New York
    ],
)
def test_gen_entry_window(moment: datetime, inside: bool) -> None:
    assert in_entry_window(CFG.gen, moment) is inside


def test_outside_the_window_nothing_is_planned() -> None:
    result = plan_entries(GEN, book(GEN), {"TSLA": TSLA, "NVDA": NVDA}, at(THU, 11, 0), GREEN, CFG)
    assert result.plans == []
    assert {s.code for s in result.skipped.values()} == {SkipCode.OUTSIDE_WINDOW}


def test_a_paused_sleeve_plans_nothing() -> None:
    result = plan_entries(GEN, book(GEN, paused=True), {"TSLA": TSLA, "NVDA": NVDA}, at(THU), GREEN, CFG)
    assert result.plans == []
    assert {t: s.code for t, s in result.skipped.items()} == {"TSLA": SkipCode.PAUSED, "NVDA": SkipCode.PAUSED}


def test_no_expiry_and_no_delta_in_band_are_reported() -> None:
    weekly_only = chain("TSLA", puts(NEXT_FRI, (400, -0.45, 1500, 1550)))
    far_otm = chain("NVDA", puts(FRI, (150, -0.05, 5, 10)))
    result = plan_entries(GEN, book(GEN), {"TSLA": weekly_only, "NVDA": far_otm}, at(THU), GREEN, CFG)
    assert result.skipped["TSLA"].code is SkipCode.NO_EXPIRY
    assert result.skipped["NVDA"].code is SkipCode.NO_DELTA_IN_BAND


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        in_entry_window(CFG.gen, datetime(2026, 12, 3, 10, 30))
    with pytest.raises(ValueError, match="book of"):
        plan_entries(GEN, book(REV), {}, at(THU), GREEN, CFG)
    with pytest.raises(ValueError, match="STAR-LAB"):
        plan_entries(SleeveKind.STARLAB, book(SleeveKind.STARLAB), {}, at(THU), GREEN, CFG)
    with pytest.raises(ValueError, match="negative"):
        book(GEN, free=-1)


@pytest.mark.parametrize(
    ("sleeve", "day", "clock", "open_"),
    [
        (SleeveKind.GEN, date(2026, 12, 3), time(10, 0), True),  # Thursday: puts
        (SleeveKind.GEN, date(2026, 12, 3), time(11, 0), False),  # the window's end is excluded
        (SleeveKind.GEN, date(2026, 12, 1), time(10, 30), True),  # Tuesday: covered calls may open
        (SleeveKind.GEN, date(2026, 12, 2), time(10, 30), False),  # Wednesday: neither
        (SleeveKind.COM, date(2026, 11, 30), time(10, 0), True),  # Monday
        (SleeveKind.COM, date(2026, 12, 3), time(10, 0), False),
    ],
)
def test_entry_window_open_covers_puts_and_calls(sleeve: SleeveKind, day: date, clock: time, open_: bool) -> None:
    assert strategies.entry_window_open(sleeve, default_config(), datetime.combine(day, clock, NEW_YORK)) is open_
