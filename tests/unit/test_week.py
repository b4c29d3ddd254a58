from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from alluse.domain.config import DeltaBand, WeekModeConfig, WeekTypeThresholds, default_config, effective_config
from alluse.domain.errors import ValidationFailed
from alluse.domain.instruments import OptionRight
from alluse.domain.sleeves import SleeveKind
from alluse.domain.week import (
    ModeAccuracy,
    MovementBucket,
    SleeveWeek,
    WeekMode,
    WeekOutcome,
    WeekRecord,
    WeekType,
    classify_week,
    confirm_week_mode,
    delta_shift,
    guess_week_mode,
    movement_bucket,
    shifted_band,
    type_accuracy,
)

CFG = WeekModeConfig()
TYPES = default_config().week_types
PUT, CALL = OptionRight.PUT, OptionRight.CALL
Out = WeekOutcome


def put(outcome: WeekOutcome, move: str, *, roll_possible: bool = False) -> SleeveWeek:
    return SleeveWeek(traded=True, side=PUT, outcome=outcome, move=Decimal(move), roll_possible=roll_possible)


def call(outcome: WeekOutcome, move: str) -> SleeveWeek:
    return SleeveWeek(traded=True, side=CALL, outcome=outcome, move=Decimal(move))


# --- week type --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("week", "expected"),
    [
        (put(Out.EXPIRED_WORTHLESS, "0.02"), "P-EW"),
        (put(Out.ASSIGNED, "-0.03"), "P-AWL"),
        (put(Out.ROLLED, "-0.07", roll_possible=True), "P-RO"),
        (put(Out.ASSIGNED, "-0.08"), "P-AOL"),
        (put(Out.ASSIGNED, "-0.20"), "P-DD"),
        (call(Out.CALLED_AWAY, "0.03"), "C-WAP"),
        (call(Out.CALLED_AWAY, "0.08"), "C-WAP+"),
        (call(Out.EXPIRED_WORTHLESS, "-0.02"), "C-PNO"),
        (call(Out.ROLLED, "-0.07"), "C-RO"),
        (call(Out.OPEN, "-0.12"), "C-REC"),
        (SleeveWeek.idle(), "W-IDL"),
    ],
)
def test_one_week_per_code(week: SleeveWeek, expected: str) -> None:
    assert classify_week(week, TYPES) == WeekType(expected)


def test_the_eleven_codes_are_the_spec_codes() -> None:
    codes = ["P-EW", "P-AWL", "P-RO", "P-AOL", "P-DD", "C-WAP", "C-WAP+", "C-PNO", "C-RO", "C-REC", "W-IDL"]
    assert [t.value for t in WeekType] == codes


@pytest.mark.parametrize(
    ("week", "expected"),
    [
        # exactly -5 % is still within the limit ("0 to -5 %"); just below is over it
        (put(Out.ASSIGNED, "-0.05"), WeekType.P_AWL),
        (put(Out.ASSIGNED, "-0.0501"), WeekType.P_AOL),
        (put(Out.OPEN, "-0.05", roll_possible=True), WeekType.P_AWL),
        (put(Out.OPEN, "-0.0501", roll_possible=True), WeekType.P_RO),
        (put(Out.OPEN, "-0.0501"), WeekType.P_AOL),
        # exactly -15 % is not a deep drawdown ("< -15 %"); below it is, whatever the outcome
        (put(Out.ASSIGNED, "-0.15"), WeekType.P_AOL),
        (put(Out.ASSIGNED, "-0.1501"), WeekType.P_DD),
        (put(Out.ROLLED, "-0.1501"), WeekType.P_DD),
        (put(Out.OPEN, "-0.30", roll_possible=True), WeekType.P_DD),
        # calls: exactly -5 % premium only, exactly -10 % rolled, below it recovery; +5 % is strong
        (call(Out.EXPIRED_WORTHLESS, "-0.05"), WeekType.C_PNO),
        (call(Out.EXPIRED_WORTHLESS, "-0.0501"), WeekType.C_RO),
        (call(Out.ROLLED, "-0.10"), WeekType.C_RO),
        (call(Out.ROLLED, "-0.1001"), WeekType.C_REC),
        (call(Out.OPEN, "-0.40"), WeekType.C_REC),
        (call(Out.CALLED_AWAY, "0.05"), WeekType.C_WAP_PLUS),
        (call(Out.CALLED_AWAY, "0.0499"), WeekType.C_WAP),
        (call(Out.CALLED_AWAY, "0.25"), WeekType.C_WAP_PLUS),
        (call(Out.CALLED_AWAY, "-0.01"), WeekType.C_WAP),
        (call(Out.EXPIRED_WORTHLESS, "0.04"), WeekType.C_PNO),
    ],
)
def test_boundaries_and_precedence(week: SleeveWeek, expected: WeekType) -> None:
    assert classify_week(week, TYPES) is expected


@pytest.mark.parametrize(
    ("week", "expected"),
    [
        (put(Out.ROLLED, "-0.01"), WeekType.P_RO),  # a roll happened: the fact wins over the move
        (put(Out.EXPIRED_WORTHLESS, "-0.01"), WeekType.P_EW),  # judged at DTE 1, expired worthless after all
        (put(Out.CLOSED, "0"), WeekType.P_EW),
        (put(Out.CLOSED, "-0.02"), WeekType.P_AWL),
    ],
)
def test_put_outcome_before_move(week: SleeveWeek, expected: WeekType) -> None:
    assert classify_week(week, TYPES) is expected


def test_thresholds_come_from_settings() -> None:
    wide = effective_config({"week_types": {"assignment_limit": "0.08", "deep_drawdown": "0.25"}}).week_types
    assert classify_week(put(Out.ASSIGNED, "-0.07"), wide) is WeekType.P_AWL
    assert classify_week(put(Out.ASSIGNED, "-0.20"), wide) is WeekType.P_AOL


def test_thresholds_must_increase() -> None:
    with pytest.raises(ValidationError, match="must increase"):
        WeekTypeThresholds(assignment_limit=Decimal("0.20"))
    with pytest.raises(ValidationError):
        WeekTypeThresholds(surprise=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"traded": True},
        {"traded": True, "side": PUT, "outcome": Out.CALLED_AWAY, "move": Decimal(0)},
        {"traded": True, "side": CALL, "outcome": Out.ASSIGNED, "move": Decimal(0)},
        {"traded": True, "side": PUT, "outcome": Out.OPEN, "move": Decimal("NaN")},
    ],
)
def test_sleeve_week_refuses_impossible_weeks(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        SleeveWeek(**kwargs)  # type: ignore[arg-type]


def test_idle_week_ignores_any_move() -> None:
    assert classify_week(SleeveWeek(traded=False, side=PUT, move=Decimal("-0.5")), TYPES) is WeekType.W_IDL


@pytest.mark.parametrize(
    ("move", "bucket"),
    [
        ("0.12", MovementBucket.STRONG_UP),
        ("0.10", MovementBucket.STRONG_UP),
        ("0.05", MovementBucket.UP),
        ("0.02", MovementBucket.SLIGHT_UP),
        ("0.01", MovementBucket.FLAT),
        ("-0.01", MovementBucket.FLAT),
        ("-0.05", MovementBucket.SLIGHT_DOWN),
        ("-0.06", MovementBucket.DOWN),
        ("-0.10", MovementBucket.DOWN),
        ("-0.15", MovementBucket.STRONG_DOWN),
        ("-0.1501", MovementBucket.EXTREME_DOWN),
    ],
)
def test_movement_buckets(move: str, bucket: MovementBucket) -> None:
    assert movement_bucket(Decimal(move), TYPES) is bucket


# --- week mode --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ret", "vol", "mode"),
    [
        (0.03, 0.40, WeekMode.GREEN),  # up: Green, whatever the volatility
        (0.015, 0.10, WeekMode.GREEN),  # exactly the bullish threshold (float read exactly)
        (-0.03, 0.30, WeekMode.RED),  # down, high vol
        (-0.03, 0.10, WeekMode.CHOP),  # down, low vol
        (-0.015, 0.10, WeekMode.CHOP),  # exactly the bearish threshold
        (0.0, 0.10, WeekMode.CHOP),  # flat, low vol
        (0.0149, 0.20, WeekMode.RED),  # flat, vol exactly at the reference counts as high
    ],
)
def test_guess_and_confirm_follow_the_tree(ret: float, vol: float, mode: WeekMode) -> None:
    assert guess_week_mode(ret, vol, 0.20, CFG) is mode
    assert confirm_week_mode(Decimal(str(ret)), Decimal(str(vol)), Decimal("0.20"), CFG) is mode


def test_bullish_threshold_and_vol_factor_are_settings() -> None:
    cfg = WeekModeConfig(bullish_threshold=Decimal("0.04"))
    assert guess_week_mode(0.03, 0.1, 0.2, cfg) is WeekMode.CHOP
    assert guess_week_mode(0.0, 0.3, 0.2, WeekModeConfig(high_vol_factor=Decimal("2"))) is WeekMode.CHOP


@pytest.mark.parametrize(("vol", "ref"), [(float("nan"), 0.2), (0.2, 0.0), (-0.1, 0.2)])
def test_guess_refuses_unknown_measurements(vol: float, ref: float) -> None:
    with pytest.raises(ValidationFailed):
        guess_week_mode(0.0, vol, ref, CFG)


def test_delta_shifts_from_config() -> None:
    assert delta_shift(WeekMode.GREEN, CFG) == 0
    assert delta_shift(WeekMode.RED, CFG) == Decimal("-0.05")
    assert delta_shift(WeekMode.CHOP, CFG) == Decimal("-0.10")
    assert delta_shift(WeekMode.RED, WeekModeConfig(red_delta_shift=Decimal("-0.02"))) == Decimal("-0.02")


def test_shifted_band_moves_delta_only() -> None:
    band = DeltaBand(min=Decimal("0.40"), max=Decimal("0.50"))
    red = shifted_band(band, WeekMode.RED, CFG)
    assert (red.min, red.max) == (Decimal("0.35"), Decimal("0.45"))
    assert set(type(red).model_fields) == {"min", "max"}  # a band has no size to change
    assert shifted_band(band, WeekMode.GREEN, CFG) == band


def test_every_sleeve_band_stays_inside_zero_one_in_every_mode() -> None:
    config = default_config()
    bands = [config.gen.delta_band, config.rev.delta_band, config.com.delta_band, config.gen.covered_call.delta_band]
    for band in bands:
        for mode in WeekMode:
            shifted = shifted_band(band, mode, config.week_mode)
            assert 0 < shifted.min < shifted.max < 1
            assert shifted.max - shifted.min == band.max - band.min


def test_shift_leaving_zero_one_is_refused() -> None:
    band = DeltaBand(min=Decimal("0.05"), max=Decimal("0.10"))
    with pytest.raises(ValidationFailed) as err:
        shifted_band(band, WeekMode.CHOP, CFG)
    assert err.value.field == "week_mode.chop_delta_shift"


# --- accuracy ---------------------------------------------------------------------------------------


def test_mode_accuracy_arithmetic() -> None:
    empty = ModeAccuracy()
    assert empty.accuracy is None and empty.count == 0
    acc = (
        empty.record(WeekMode.GREEN, WeekMode.GREEN)
        .record(WeekMode.GREEN, WeekMode.RED)
        .record(WeekMode.CHOP, WeekMode.CHOP)
        .record(WeekMode.RED, WeekMode.CHOP)
    )
    assert empty.count == 0  # record returns a new value
    assert (acc.count, acc.hits, acc.accuracy) == (4, 2, Fraction(1, 2))
    assert acc.confusion(WeekMode.GREEN, WeekMode.RED) == 1
    assert acc.confusion(WeekMode.RED, WeekMode.GREEN) == 0
    assert acc.precision(WeekMode.GREEN) == Fraction(1, 2)
    assert acc.recall(WeekMode.CHOP) == Fraction(1, 2)
    assert acc.recall(WeekMode.GREEN) == 1
    assert acc.precision(WeekMode.RED) == 0
    assert (acc.guessed(WeekMode.GREEN), acc.confirmed(WeekMode.CHOP)) == (2, 2)


@given(st.lists(st.tuples(st.sampled_from(WeekMode), st.sampled_from(WeekMode)), max_size=40))
def test_accuracy_counts_every_record(pairs: list[tuple[WeekMode, WeekMode]]) -> None:
    acc = ModeAccuracy()
    for guess, actual in pairs:
        acc = acc.record(guess, actual)
    assert acc.count == len(pairs)
    assert acc.hits == sum(g is a for g, a in pairs)
    assert sum(acc.guessed(m) for m in WeekMode) == sum(acc.confirmed(m) for m in WeekMode) == len(pairs)


def _rec(guess: WeekMode | None, actual: WeekMode | None, entry: WeekType | None, close: WeekType | None) -> WeekRecord:
    return WeekRecord("ACC-001", SleeveKind.GEN, date(2026, 11, 23), guess, actual, entry, close)


def test_week_records_feed_accuracy() -> None:
    records = [
        _rec(WeekMode.GREEN, WeekMode.GREEN, WeekType.P_EW, WeekType.P_EW),
        _rec(WeekMode.RED, WeekMode.CHOP, WeekType.P_EW, WeekType.P_RO),
        _rec(WeekMode.CHOP, None, None, WeekType.P_EW),  # not confirmed yet, no prediction
    ]
    assert records[0].mode_hit is True and records[1].mode_hit is False and records[2].mode_hit is None
    acc = ModeAccuracy.from_records(records)
    assert (acc.count, acc.accuracy) == (2, Fraction(1, 2))
    assert type_accuracy(records) == Fraction(1, 2)
    assert type_accuracy([]) is None


def test_week_record_starts_on_monday() -> None:
    with pytest.raises(ValidationFailed):
        WeekRecord("ACC-001", SleeveKind.GEN, date(2026, 11, 24))


def test_prior_week_measures_read_the_last_completed_week() -> None:
    import numpy as np

    from alluse.domain.week import prior_week_measures

    sessions = np.arange(np.datetime64("2026-09-01"), np.datetime64("2026-12-05"))
    sessions = sessions[np.is_busday(sessions)]  # weekdays only: enough for the measure
    closes = np.full(sessions.shape, 100.0)
    last_friday = np.datetime64("2026-11-27")
    closes[sessions == last_friday] = 103.0  # the week of 23 Nov ends 3 % up on the week before
    closes[sessions > last_friday] = 999.0  # this week is not looked at
    week_return, week_vol, reference = prior_week_measures(sessions, closes, date(2026, 12, 2), CFG)  # type: ignore[misc]
    assert week_return == pytest.approx(0.03) and week_vol > 0 and reference > 0
    short = CFG.model_copy(update={"min_history_sessions": len(sessions)})
    assert prior_week_measures(sessions, closes, date(2026, 12, 2), short) is None
