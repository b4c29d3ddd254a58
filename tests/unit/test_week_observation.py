"""A sleeve's week observed from what happened (sold options, settlements, closes, basis), and an
account's equity marked to market, cent for cent."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from alluse.domain.accounts import Account, open_account
from alluse.domain.brokerage import SettlementKind
from alluse.domain.config import WeekTypeThresholds, default_config
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.instruments import Equity, Instrument, OptionContract, OptionRight
from alluse.domain.ledger import basis_per_share_cents, equity_cents, option_mark_cents
from alluse.domain.money import cents_of_price
from alluse.domain.sleeves import SleeveKind
from alluse.domain.week import (
    SleeveWeek,
    WeekMode,
    WeekOutcome,
    WeekType,
    classify_week,
    observe_sleeve_week,
    predict_week_type,
)

FRI = date(2026, 12, 4)
NOW = datetime(2026, 12, 3, 15, tzinfo=UTC)
TYPES = WeekTypeThresholds()
PUT, CALL = OptionRight.PUT, OptionRight.CALL
Settled = SettlementKind
PUT_240 = OptionContract("TSLA", FRI, 24_000, PUT)
NVDA_PUT_120 = OptionContract("NVDA", FRI, 12_000, PUT)


def code(week: SleeveWeek) -> WeekType:
    return classify_week(week, TYPES)


# --- observe_sleeve_week -----------------------------------------------------------------------------


def test_nothing_sold_is_an_idle_week() -> None:
    week = observe_sleeve_week([], {}, {}, {})
    assert week == SleeveWeek.idle() and week.traded is False
    assert code(week) is WeekType.W_IDL


def test_a_put_expired_worthless_above_the_strike_is_p_ew() -> None:
    week = observe_sleeve_week([(PUT_240, 2)], {PUT_240: Settled.EXPIRED_WORTHLESS}, {"TSLA": 25_200}, {})
    assert week.traded and week.side is PUT and week.outcome is WeekOutcome.EXPIRED_WORTHLESS
    assert week.move == Decimal("0.05")  # 252 / 240 - 1, exact
    assert code(week) is WeekType.P_EW


@pytest.mark.parametrize(
    ("close_cents", "move", "expected"),
    [
        (23_280, "-0.03", WeekType.P_AWL),  # 3 % below the strike: within the 5 % limit
        (22_080, "-0.08", WeekType.P_AOL),  # 8 % below: over the limit
        (19_200, "-0.20", WeekType.P_DD),  # 20 % below: deep drawdown
    ],
)
def test_an_assigned_put_is_judged_by_the_close_against_the_strike(
    close_cents: int, move: str, expected: WeekType
) -> None:
    week = observe_sleeve_week([(PUT_240, 1)], {PUT_240: Settled.ASSIGNED}, {"TSLA": close_cents}, {})
    assert week.side is PUT and week.outcome is WeekOutcome.ASSIGNED
    assert week.move == Decimal(move)
    assert code(week) is expected


@pytest.mark.parametrize(
    ("strike_cents", "close_cents", "move", "expected"),
    [
        # 6 % above the 229.00 basis; against the 240.00 strike it would be only +1.1 % (C-WAP)
        (24_000, 24_274, "0.06", WeekType.C_WAP_PLUS),
        # 2 % above the basis; against the 220.00 strike it would be +6.2 % (C-WAP+)
        (22_000, 23_358, "0.02", WeekType.C_WAP),
    ],
)
def test_a_called_away_call_is_judged_against_the_basis(
    strike_cents: int, close_cents: int, move: str, expected: WeekType
) -> None:
    call = OptionContract("TSLA", FRI, strike_cents, CALL)
    week = observe_sleeve_week(
        [(call, 1)], {call: Settled.CALLED_AWAY}, {"TSLA": close_cents}, {"TSLA": 22_900, "NVDA": 10_000}
    )
    assert week.side is CALL and week.outcome is WeekOutcome.CALLED_AWAY
    assert week.move == Decimal(move)
    assert code(week) is expected


def test_a_call_without_a_basis_is_judged_against_its_strike() -> None:
    call = OptionContract("TSLA", FRI, 25_000, CALL)
    # a basis for another ticker does not count
    week = observe_sleeve_week([(call, 1)], {call: Settled.CALLED_AWAY}, {"TSLA": 26_500}, {"NVDA": 10_000})
    assert week.move == Decimal("0.06")
    assert code(week) is WeekType.C_WAP_PLUS


@pytest.mark.parametrize(
    ("tsla_contracts", "nvda_contracts", "expected"),
    [
        (1, 3, WeekType.P_EW),  # NVDA 120 × 3 = 360 beats TSLA 240 × 1: NVDA expired worthless
        (2, 1, WeekType.P_AOL),  # TSLA 240 × 2 = 480 beats NVDA 120 × 1: TSLA assigned 8 % below
    ],
)
def test_the_largest_notional_decides(tsla_contracts: int, nvda_contracts: int, expected: WeekType) -> None:
    sold = [(PUT_240, tsla_contracts), (NVDA_PUT_120, nvda_contracts)]
    settled = {PUT_240: Settled.ASSIGNED, NVDA_PUT_120: Settled.EXPIRED_WORTHLESS}
    week = observe_sleeve_week(sold, settled, {"TSLA": 22_080, "NVDA": 12_600}, {})
    assert code(week) is expected
    if expected is WeekType.P_EW:
        assert week.outcome is WeekOutcome.EXPIRED_WORTHLESS and week.move == Decimal("0.05")
    else:
        assert week.outcome is WeekOutcome.ASSIGNED and week.move == Decimal("-0.08")


def test_a_contract_sold_in_several_fills_counts_all_its_contracts() -> None:
    # TSLA 240 × (1 + 1 + 1) = 720 is the larger position; NVDA 120 × 4 = 480
    sold = [(PUT_240, 1), (PUT_240, 1), (PUT_240, 1), (NVDA_PUT_120, 4)]
    settled = {PUT_240: Settled.ASSIGNED, NVDA_PUT_120: Settled.EXPIRED_WORTHLESS}
    week = observe_sleeve_week(sold, settled, {"TSLA": 22_080, "NVDA": 12_600}, {})
    assert week.outcome is WeekOutcome.ASSIGNED and code(week) is WeekType.P_AOL


def test_a_sold_option_not_settled_is_still_open() -> None:
    other = OptionContract("TSLA", FRI, 23_000, PUT)
    week = observe_sleeve_week([(PUT_240, 1)], {other: Settled.ASSIGNED}, {"TSLA": 23_520}, {})
    assert week.outcome is WeekOutcome.OPEN
    assert week.move == Decimal("-0.02")
    assert code(week) is WeekType.P_AWL  # open, 2 % below: within the limit


@pytest.mark.parametrize("closes", [{}, {"NVDA": 12_000}])
def test_a_missing_close_is_refused(closes: dict[str, int]) -> None:
    with pytest.raises(ValidationFailed) as err:
        observe_sleeve_week([(PUT_240, 1)], {PUT_240: Settled.EXPIRED_WORTHLESS}, closes, {})
    assert err.value.field == "closes_cents"
    assert "TSLA" in str(err.value)


# --- equity_cents ----------------------------------------------------------------------------------


def account() -> Account:
    cfg = default_config()
    opened, _ = open_account(
        "ACC-1",
        name="t",
        capital_cents=100_000_000,
        weights=cfg.allocation.weights(),
        buffer_pct=cfg.allocation.cash_buffer_pct,
        now=NOW,
    )
    return opened


def holding(base: Account, sleeve: SleeveKind, positions: dict[Instrument, int]) -> Account:
    balance = replace(base.sleeve(sleeve), positions=positions)
    return replace(base, sleeves={**base.sleeves, sleeve: balance})


def test_cash_alone_is_the_equity() -> None:
    plain = account()
    assert equity_cents(plain, {}) == plain.cash_cents == 100_000_000


def test_equity_is_cash_plus_shares_plus_short_options_at_their_marks() -> None:
    stock = Equity("TSLA")
    call = OptionContract("TSLA", FRI, 26_000, CALL)
    held = holding(account(), SleeveKind.REV, {stock: 300, call: -3, PUT_240: 0})  # a zero position needs no mark
    held = holding(held, SleeveKind.GEN, {NVDA_PUT_120: -2})
    marks: dict[Instrument, int] = {stock: 25_013, call: 187, NVDA_PUT_120: 41}
    expected = 100_000_000 + 300 * 25_013 - 3 * 100 * 187 - 2 * 100 * 41
    assert equity_cents(held, marks) == expected == 107_439_600


def test_a_position_without_a_mark_is_a_gap() -> None:
    held = holding(account(), SleeveKind.GEN, {PUT_240: -1, Equity("TSLA"): 100})
    with pytest.raises(MarketDataGap) as err:
        equity_cents(held, {Equity("TSLA"): 25_000})
    assert err.value.field == "marks_cents"
    assert PUT_240.symbol in str(err.value)


def test_basis_per_share_is_the_cost_of_held_shares_only() -> None:
    stock, call = Equity("TSLA"), OptionContract("TSLA", FRI, 26_000, CALL)
    balance = replace(
        account().sleeve(SleeveKind.GEN),
        positions={stock: 300, call: -3, Equity("NVDA"): 0},
        costs={stock: 7_200_001, call: -56_100},
    )
    assert basis_per_share_cents(balance) == {"TSLA": 24_000}  # 7,200,001 / 300, whole cents rounded down


@pytest.mark.parametrize(
    ("contract", "mid", "spot", "mark"),
    [
        (PUT_240, 315, 23_000, 315),  # listed: the mid, whatever the spot
        (PUT_240, None, 23_000, 1_000),  # delisted put: strike − spot
        (PUT_240, None, 25_000, 0),  # out of the money: worthless
        (OptionContract("TSLA", FRI, 26_000, CALL), None, 26_450, 450),  # delisted call: spot − strike
    ],
)
def test_an_option_is_marked_at_its_mid_else_its_intrinsic_value(
    contract: OptionContract, mid: int | None, spot: int, mark: int
) -> None:
    assert option_mark_cents(contract, mid, spot) == mark


@pytest.mark.parametrize(
    ("price", "cents"), [(12.345, 1234), (12.355, 1236), (0.1 + 0.2, 30), (250.0, 25_000), (99.994, 9999)]
)
def test_a_float_price_becomes_the_nearest_cent(price: float, cents: int) -> None:
    assert cents_of_price(price) == cents


# --- rolled and stopped weeks, and the type expected at entry --------------------------------------


def test_a_put_rolled_by_the_atr_protocol_is_a_rolled_week() -> None:
    week = observe_sleeve_week([(PUT_240, 2)], {}, {"TSLA": 22_000}, {}, rolled={PUT_240})
    assert week.outcome is WeekOutcome.ROLLED
    assert code(week) is WeekType.P_RO


def test_a_put_bought_back_by_a_stop_is_closed_not_open() -> None:
    week = observe_sleeve_week([(PUT_240, 2)], {}, {"TSLA": 21_000}, {}, bought_back={PUT_240})
    assert week.outcome is WeekOutcome.CLOSED
    assert code(week) is WeekType.P_AOL  # -12.5 % with no roll: over the limit


def test_expiry_settlement_outranks_a_roll_record() -> None:
    week = observe_sleeve_week([(PUT_240, 2)], {PUT_240: Settled.EXPIRED_WORTHLESS}, {"TSLA": 25_000}, {}, rolled=())
    assert week.outcome is WeekOutcome.EXPIRED_WORTHLESS


GREEN, RED, CHOP = WeekMode.GREEN, WeekMode.RED, WeekMode.CHOP


@pytest.mark.parametrize(
    ("side", "mode", "expected"),
    [
        (PUT, GREEN, WeekType.P_EW),
        (PUT, CHOP, WeekType.P_EW),
        (PUT, RED, WeekType.P_AWL),
        (CALL, GREEN, WeekType.C_WAP),
        (CALL, CHOP, WeekType.C_PNO),
        (CALL, RED, WeekType.C_PNO),
    ],
)
def test_without_a_record_the_type_at_entry_comes_from_the_modes_table(
    side: OptionRight, mode: WeekMode, expected: WeekType
) -> None:
    assert predict_week_type(side, mode, [], TYPES) is expected


def test_no_entry_predicts_an_idle_week_and_no_mode_predicts_nothing() -> None:
    assert predict_week_type(None, GREEN, [], TYPES) is WeekType.W_IDL
    assert predict_week_type(PUT, None, [], TYPES) is None


def test_with_enough_alike_weeks_the_accounts_own_record_decides() -> None:
    config = WeekTypeThresholds(prediction_min_weeks=3)
    past = [(PUT, RED, WeekType.P_EW)] * 2 + [(PUT, RED, WeekType.P_RO)] + [(PUT, GREEN, WeekType.P_DD)] * 5
    assert predict_week_type(PUT, RED, past, config) is WeekType.P_EW  # 3 red put weeks: 2 × P-EW
    assert predict_week_type(PUT, CHOP, past, config) is WeekType.P_EW  # no chop record: the table
    assert predict_week_type(PUT, RED, past[:2], config) is WeekType.P_AWL  # 2 < 3 weeks: the table


def test_a_tie_in_the_record_goes_to_the_earlier_code() -> None:
    config = WeekTypeThresholds(prediction_min_weeks=2)
    past = [(CALL, GREEN, WeekType.C_PNO), (CALL, GREEN, WeekType.C_WAP)]
    assert predict_week_type(CALL, GREEN, past, config) is WeekType.C_WAP  # C-WAP is listed before C-PNO
