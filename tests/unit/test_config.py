"""Tests of alluse.domain.config: defaults, bounds, cross-field checks, layering and the pure helpers."""

from __future__ import annotations

import copy
import json
from datetime import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from alluse.domain.config import (
    AllocationConfig,
    AllUseConfig,
    DeltaBand,
    GenConfig,
    Weekday,
    default_config,
    diff_paths,
    effective_config,
    flatten,
    merge_layers,
    parse_assignments,
    to_jsonable,
)
from alluse.domain.errors import ValidationFailed
from alluse.domain.sleeves import SLEEVE_ORDER, SleeveKind

D = Decimal


def _refused(*layers: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        effective_config(*layers)
    return info.value


def _all_models(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[type[BaseModel]]:
    seen = set() if seen is None else seen
    seen.add(model)
    instance_fields = model.model_fields
    for field in instance_fields.values():
        annotation = field.annotation
        candidates = (*getattr(annotation, "__args__", ()), annotation)
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate not in seen:
                _all_models(candidate, seen)
    return seen


# ---------------------------------------------------------------------------------------------- defaults


def test_defaults_match_the_spec() -> None:
    cfg = default_config()
    assert cfg.account.initial_capital == D("500000")
    assert cfg.account.brokerage_id_pattern == r"^(DU|U)\d{5,9}$"
    assert (cfg.allocation.gen, cfg.allocation.rev, cfg.allocation.com, cfg.allocation.starlab) == (
        D("0.40"),
        D("0.30"),
        D("0.30"),
        D("0"),
    )
    assert cfg.allocation.cash_buffer_pct == D("0.05")
    assert cfg.allocation.trade_capital_pct == D("0.95")
    assert cfg.gen.tickers == ["TSLA", "NVDA"]
    assert (cfg.gen.delta_band.min, cfg.gen.delta_band.max) == (D("0.40"), D("0.50"))
    assert (cfg.gen.dte_min, cfg.gen.dte_max) == (0, 1)
    assert cfg.gen.entry.days == [Weekday.THU]
    assert (cfg.gen.entry.start, cfg.gen.entry.end) == (time(10, 0), time(11, 0))
    assert cfg.gen.premium_floor_pct == D("0.015")
    assert cfg.gen.target_weekly_pct == D("0.02")
    assert cfg.gen.strike_offset_atr == D("0.5")
    assert cfg.gen.covered_call.entry.days == [Weekday.MON, Weekday.TUE]
    assert cfg.gen.covered_call.premium_floor_pct == D("0.015")
    assert cfg.rev.tickers == ["AAPL", "MSFT", "AMZN", "GOOG"]
    assert (cfg.rev.delta_band.min, cfg.rev.delta_band.max) == (D("0.30"), D("0.40"))
    assert cfg.rev.entry.days == [Weekday.MON, Weekday.TUE, Weekday.WED]  # A4 wins over B§10's THU
    assert (cfg.rev.dte_min, cfg.rev.dte_max) == (0, 7)
    assert cfg.rev.premium_floor_pct == D("0.01")
    assert cfg.com.tickers == ["AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA"]
    assert (cfg.com.delta_band.min, cfg.com.delta_band.max) == (D("0.20"), D("0.25"))
    assert cfg.com.entry.days == [Weekday.MON]
    assert cfg.com.target_annual_pct == D("0.15")
    assert cfg.com.round_lot == 100
    assert cfg.com.never_withdraws is True
    assert (cfg.week_mode.green_delta_shift, cfg.week_mode.red_delta_shift, cfg.week_mode.chop_delta_shift) == (
        D("0"),
        D("-0.05"),
        D("-0.10"),
    )
    assert (cfg.week_mode.guess_day, cfg.week_mode.guess_time) == (Weekday.MON, time(9, 45))
    assert cfg.week_mode.high_vol_factor == D(1)
    types = cfg.week_types
    assert (types.flat_band, types.assignment_limit, types.strong_call_away) == (D("0.01"), D("0.05"), D("0.05"))
    assert (types.recovery_threshold, types.deep_drawdown) == (D("0.10"), D("0.15"))
    assert cfg.atr_protocol.atr_period == 14
    assert cfg.atr_protocol.reference == "entry"
    assert (cfg.atr_protocol.l1, cfg.atr_protocol.l2, cfg.atr_protocol.l3) == (D(1), D(2), D(3))
    assert cfg.atr_protocol.scan_interval_minutes == 15
    assert cfg.atr_protocol.auto_action.l3.action == "close"
    roll = cfg.atr_protocol.roll
    assert [(w.min_days, w.max_days) for w in (roll.gen, roll.rev, roll.com)] == [(1, 7), (3, 4), (1, 7)]
    assert roll.require_net_credit is True
    prio = cfg.atr_protocol.priorities
    assert (prio.l0, prio.l1, prio.l2, prio.l3) == ("LOW", "MEDIUM", "HIGH", "CRITICAL")
    assert cfg.circuit_breakers.consecutive_losses == 3
    assert cfg.circuit_breakers.daily_drawdown_pct == D("0.05")
    assert cfg.circuit_breakers.simultaneous_breaches == 2
    assert (cfg.circuit_breakers.vix_hedged, cfg.circuit_breakers.vix_safe, cfg.circuit_breakers.vix_kill) == (
        D(50),
        D(65),
        D(80),
    )
    assert cfg.risk.min_open_interest == 500
    assert cfg.risk.max_spread_pct_of_mid == D("0.05")
    assert cfg.risk.min_volume == 100
    assert cfg.risk.max_pct_of_adv == D("0.10")
    assert cfg.orders.reprice_after_seconds == 3
    assert cfg.orders.commission_per_contract == D("0.65")
    assert cfg.orders.tif == "DAY"
    assert (cfg.orders.reprice_step_ticks, cfg.orders.max_submit_attempts) == (1, 3)
    assert (cfg.ticks.option_small_tick_cents, cfg.ticks.option_large_tick_cents) == (1, 5)
    assert (cfg.ticks.option_threshold_cents, cfg.ticks.equity_tick_cents) == (300, 1)
    assert cfg.ticks.penny_everywhere == frozenset({"SPY", "QQQ", "IWM"})
    assert cfg.lifecycle.gen_fork_threshold == D(50000)
    assert cfg.lifecycle.rev_fork_threshold == D(500000)
    assert cfg.lifecycle.merge_threshold == D(500000)
    assert cfg.lifecycle.merge_policy == "liquidate"
    assert cfg.lifecycle.fork_cadence == "quarterly"
    assert cfg.lifecycle.reinvest_months == [1, 4, 7, 10]  # A11 wins over B§10's 3/6/9/12
    assert (cfg.lifecycle.rev_reinvest.wheel, cfg.lifecycle.rev_reinvest.leaps) == (D("0.75"), D("0.25"))
    assert (cfg.lifecycle.com_reinvest.shares, cfg.lifecycle.com_reinvest.leaps) == (D("0.75"), D("0.25"))
    assert (cfg.lifecycle.leaps_delta.min, cfg.lifecycle.leaps_delta.max) == (D("0.70"), D("0.80"))
    assert (cfg.tax.short_term_rate, cfg.tax.long_term_rate, cfg.tax.lot_method) == (D("0.30"), D("0.15"), "FIFO")
    assert cfg.tax.long_term_after_days == 365
    assert cfg.alerts.hourly_caps.protocol_breach == 5
    assert cfg.alerts.hourly_caps.system_status == 3
    assert cfg.alerts.queue_size == 1000
    assert (cfg.alerts.hourly_caps.compliance, cfg.alerts.hourly_caps.security) == (5, 5)
    assert cfg.alerts.hourly_caps.low_buffer == 5
    assert (cfg.alerts.dedupe_window_seconds, cfg.alerts.cap_window_seconds) == (3600, 3600)
    assert cfg.market_data.watchlist == ["SPY", "QQQ", "DIA", "IWM"]
    assert cfg.market_data.daily_pull_time == time(16, 30)
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.client_id, cfg.broker.mode) == ("127.0.0.1", 7496, 1, "paper")
    assert (cfg.feedback.weekly_day, cfg.feedback.weekly_time) == (Weekday.SAT, time(10, 0))
    assert cfg.feedback.mrr_confidence == D("0.7")
    assert cfg.calendar.timezone == "America/New_York"
    assert cfg.starlab.granted_clients == []
    assert cfg.hitl.premium_floor_policy == "ask"


def test_defaults_validate_and_equal_effective_config_without_layers() -> None:
    assert effective_config() == default_config()


def test_weights_follow_sleeve_order_and_sum_to_one() -> None:
    weights = default_config().allocation.weights()
    assert list(weights) == list(SLEEVE_ORDER)
    assert weights[SleeveKind.GEN] == D("0.40")
    assert sum(weights.values(), D(0)) == 1


def test_no_float_anywhere_in_defaults() -> None:
    def walk(value: Any) -> None:
        assert not isinstance(value, float), value
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(default_config())


def test_every_field_of_every_section_has_a_description() -> None:
    models = _all_models(AllUseConfig)
    assert GenConfig in models and DeltaBand in models
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_models_are_frozen() -> None:
    cfg = default_config()
    with pytest.raises(ValidationError):
        cfg.allocation.gen = D("0.5")  # type: ignore[misc]


def test_weekday_accepts_any_case() -> None:
    cfg = effective_config({"gen": {"entry": {"days": ["thu", " Fri "]}}})
    assert cfg.gen.entry.days == [Weekday.THU, Weekday.FRI]


def test_gen_weight_of_equal_split_and_explicit_weights() -> None:
    cfg = default_config()
    assert cfg.gen.weight_of("TSLA") == D("0.5")
    cfg = effective_config({"gen": {"ticker_weights": {"TSLA": "0.7", "NVDA": "0.3"}}})
    assert cfg.gen.weight_of("TSLA") == D("0.7")


# ---------------------------------------------------------------------------------------------- refusals


def test_weights_not_summing_to_one_are_refused_naming_allocation_and_the_sum() -> None:
    err = _refused({"allocation": {"gen": "0.50"}})
    assert err.field == "allocation"
    assert err.problems == [
        "allocation: sleeve weights must sum to 1 (got 1.10: gen 0.50 + rev 0.30 + com 0.30 + starlab 0)"
    ]
    assert "got 1.10" in err.message


def test_inverted_delta_band_refused_naming_gen_delta_band() -> None:
    err = _refused({"gen": {"delta_band": {"min": "0.5", "max": "0.4"}}})
    assert err.field == "gen.delta_band"
    assert err.problems == ["gen.delta_band: delta band inverted: min 0.5 > max 0.4"]


def test_empty_delta_band_refused() -> None:
    err = _refused({"rev": {"delta_band": {"min": "0.35", "max": "0.35"}}})
    assert err.field == "rev.delta_band"


def test_saturday_entry_day_refused() -> None:
    err = _refused({"gen": {"entry": {"days": ["THU", "SAT"]}}})
    assert err.field == "gen.entry.days"
    assert "entry day SAT is not a trading day" in err.problems[0]


@pytest.mark.parametrize(
    ("layer", "path", "text"),
    [
        ({"gen": {"dte_min": 3}}, "gen.dte_max", "dte_min 3 is above dte_max 1"),
        ({"account": {"initial_capital": -1}}, "account.initial_capital", "greater than 0"),
        ({"account": {"initial_capital": 0}}, "account.initial_capital", "greater than 0"),
        ({"account": {"initial_capital": "10000000.01"}}, "account.initial_capital", "less than or equal"),
        ({"account": {"brokerage_id_pattern": "(U"}}, "account.brokerage_id_pattern", "not a valid regular"),
        ({"circuit_breakers": {"vix_safe": 90}}, "circuit_breakers.vix_kill", "VIX tiers must increase"),
        ({"circuit_breakers": {"vix_hedged": 70}}, "circuit_breakers.vix_safe", "VIX tiers must increase"),
        ({"atr_protocol": {"l2": "3"}}, "atr_protocol.l3", "ATR levels must increase"),
        ({"atr_protocol": {"reference": "spot"}}, "atr_protocol.reference", "'entry' or 'strike'"),
        (
            {"gen": {"ticker_weights": {"TSLA": "0.5", "AAPL": "0.5"}}},
            "gen.ticker_weights",
            "keys must be exactly the tickers (missing NVDA; not in tickers AAPL)",
        ),
        ({"gen": {"ticker_weights": {"TSLA": "0.5", "NVDA": "0.4"}}}, "gen.ticker_weights", "must sum to 1 (got 0.9)"),
        ({"gen": {"tickers": []}}, "gen.tickers", "at least one ticker"),
        ({"gen": {"tickers": ["TSLA", "TSLA"]}}, "gen.tickers", "duplicate ticker: TSLA"),
        ({"gen": {"tickers": ["tsla"]}}, "gen.tickers.0", "upper-case"),
        ({"gen": {"tickers": ["TOOLONGX"]}}, "gen.tickers.0", "1-6"),
        ({"gen": {"entry": {"days": []}}}, "gen.entry.days", "at least one entry day"),
        ({"gen": {"entry": {"start": "11:30"}}}, "gen.entry.end", "must be after start 11:30"),
        ({"gen": {"entry": {"start": "09:00"}}}, "gen.entry.start", "outside the 09:30-16:00 session"),
        ({"week_mode": {"guess_day": "SUN"}}, "week_mode.guess_day", "SUN is not a trading day"),
        ({"week_mode": {"bearish_threshold": "0.01"}}, "week_mode.bearish_threshold", "less than 0"),
        ({"week_mode": {"choppy_correlation": "0.8"}}, "week_mode.choppy_correlation", "below trending"),
        ({"week_mode": {"chop_delta_shift": "-0.25"}}, "week_mode", "com.delta_band"),
        ({"lifecycle": {"merge_threshold": 1000}}, "lifecycle.merge_threshold", "below gen_fork_threshold"),
        ({"lifecycle": {"fork_split": {"gen": "0.6"}}}, "lifecycle.fork_split", "gen + com must sum to 1 (got 1.1)"),
        ({"lifecycle": {"rev_reinvest": {"leaps": "0.5"}}}, "lifecycle.rev_reinvest", "must sum to 1"),
        ({"lifecycle": {"reinvest_months": [1, 13]}}, "lifecycle.reinvest_months.1", "less than or equal to 12"),
        ({"lifecycle": {"reinvest_months": [1, 1]}}, "lifecycle.reinvest_months", "duplicate month: 1"),
        ({"lifecycle": {"leaps_months_min": 30}}, "lifecycle.leaps_months_max", "above leaps_months_max 24"),
        ({"orders": {"timeout_seconds": 2}}, "orders.timeout_seconds", "must exceed reprice_after_seconds 3"),
        ({"tax": {"lot_method": "LIFO"}}, "tax.lot_method", "'FIFO'"),
        ({"alerts": {"recipients": ["owner"]}}, "alerts.recipients.0", "not an e-mail address"),
        ({"broker": {"port": 70000}}, "broker.port", "less than or equal to 65535"),
        ({"broker": {"mode": "prod"}}, "broker.mode", "'paper' or 'live'"),
        ({"calendar": {"timezone": "Mars/Olympus"}}, "calendar.timezone", "unknown time zone"),
        ({"hitl": {"premium_floor_policy": "maybe"}}, "hitl.premium_floor_policy", "'skip', 'ask' or 'place'"),
        ({"starlab": {"allowed_actions": ["SELL_TO_OPEN_STRADDLE"]}}, "starlab.allowed_actions.0", "Input should be"),
        ({"allocation": {"cash_buffer_pct": 1}}, "allocation.cash_buffer_pct", "less than 1"),
        ({"allocation": {"gen": "NaN"}}, "allocation.gen", "finite number"),
    ],
)
def test_invalid_settings_are_refused_with_the_dotted_path(layer: dict[str, Any], path: str, text: str) -> None:
    err = _refused(layer)
    assert err.field == path, err.problems
    assert err.problems[0].startswith(f"{path}: ")
    assert text in err.problems[0]
    assert "Value error" not in err.message


# Settings that used to live in the domain modules (week, alerts, atr_protocol, orders, strategies):
# each is real configuration now, overridable like any other and bounds-checked.
MOVED_SETTINGS: list[tuple[str, str, Any]] = [
    ("week_mode.high_vol_factor", "2", D(2)),
    ("week_types.flat_band", "0.02", D("0.02")),
    ("week_types.assignment_limit", "0.08", D("0.08")),
    ("week_types.strong_call_away", "0.07", D("0.07")),
    ("week_types.recovery_threshold", "0.12", D("0.12")),
    ("week_types.deep_drawdown", "0.25", D("0.25")),
    ("alerts.dedupe_window_seconds", "600", 600),
    ("alerts.cap_window_seconds", "900", 900),
    ("alerts.hourly_caps.compliance", "7", 7),
    ("alerts.hourly_caps.security", "8", 8),
    ("alerts.hourly_caps.low_buffer", "1", 1),
    ("atr_protocol.roll.gen.min_days", "2", 2),
    ("atr_protocol.roll.gen.max_days", "14", 14),
    ("atr_protocol.roll.rev.min_days", "1", 1),
    ("atr_protocol.roll.rev.max_days", "9", 9),
    ("atr_protocol.roll.com.min_days", "3", 3),
    ("atr_protocol.roll.com.max_days", "10", 10),
    ("atr_protocol.roll.require_net_credit", "false", False),
    ("atr_protocol.priorities.l0", "MEDIUM", "MEDIUM"),
    ("atr_protocol.priorities.l1", "HIGH", "HIGH"),
    ("atr_protocol.priorities.l2", "CRITICAL", "CRITICAL"),
    ("atr_protocol.priorities.l3", "HIGH", "HIGH"),
    ("orders.reprice_step_ticks", "2", 2),
    ("orders.max_submit_attempts", "5", 5),
    ("ticks.option_small_tick_cents", "5", 5),
    ("ticks.option_large_tick_cents", "10", 10),
    ("ticks.option_threshold_cents", "500", 500),
    ("ticks.penny_everywhere", '["SPY"]', frozenset({"SPY"})),
    ("ticks.equity_tick_cents", "5", 5),
]


def _at_path(config: BaseModel, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _nested(path: str, value: Any) -> dict[str, Any]:
    node: Any = value
    for part in reversed(path.split(".")):
        node = {part: node}
    return dict(node)


@pytest.mark.parametrize(("path", "raw", "expected"), MOVED_SETTINGS, ids=[m[0] for m in MOVED_SETTINGS])
def test_moved_settings_are_overridable_globally_and_per_account(path: str, raw: str, expected: Any) -> None:
    assert _at_path(default_config(), path) != expected
    overridden = effective_config(parse_assignments([f"{path}={raw}"]))  # as `alluse config set` does
    assert _at_path(overridden, path) == expected
    assert diff_paths(default_config(), overridden) == {path}
    account = effective_config({}, _nested(path, expected))  # the account layer wins over the global one
    assert _at_path(account, path) == expected
    assert path in dict(flatten(account))


@pytest.mark.parametrize(
    ("layer", "path", "text"),
    [
        ({"week_mode": {"high_vol_factor": "0"}}, "week_mode.high_vol_factor", "greater than 0"),
        ({"week_mode": {"high_vol_factor": "10.5"}}, "week_mode.high_vol_factor", "less than or equal to 10"),
        ({"week_types": {"flat_band": "0"}}, "week_types.flat_band", "greater than 0"),
        ({"week_types": {"deep_drawdown": "1"}}, "week_types.deep_drawdown", "less than 1"),
        ({"week_types": {"strong_call_away": "-0.05"}}, "week_types.strong_call_away", "greater than 0"),
        ({"week_types": {"assignment_limit": "0.20"}}, "week_types", "thresholds must increase"),
        ({"week_types": {"recovery_threshold": "0.04"}}, "week_types", "thresholds must increase"),
        ({"alerts": {"dedupe_window_seconds": 0}}, "alerts.dedupe_window_seconds", "greater than or equal to 1"),
        ({"alerts": {"dedupe_window_seconds": 604_801}}, "alerts.dedupe_window_seconds", "less than or equal"),
        ({"alerts": {"cap_window_seconds": 86_401}}, "alerts.cap_window_seconds", "less than or equal to 86400"),
        ({"alerts": {"hourly_caps": {"compliance": 0}}}, "alerts.hourly_caps.compliance", "greater than or equal"),
        ({"alerts": {"hourly_caps": {"security": 10_001}}}, "alerts.hourly_caps.security", "less than or equal"),
        ({"alerts": {"hourly_caps": {"low_buffer": 0}}}, "alerts.hourly_caps.low_buffer", "greater than or equal"),
        ({"atr_protocol": {"roll": {"rev": {"min_days": 5}}}}, "atr_protocol.roll.rev", "min_days 5 is above"),
        ({"atr_protocol": {"roll": {"gen": {"min_days": 0}}}}, "atr_protocol.roll.gen.min_days", "greater than"),
        ({"atr_protocol": {"roll": {"com": {"max_days": 367}}}}, "atr_protocol.roll.com.max_days", "less than"),
        ({"atr_protocol": {"roll": {"require_net_credit": "maybe"}}}, "atr_protocol.roll.require_net_credit", "bool"),
        ({"atr_protocol": {"priorities": {"l3": "URGENT"}}}, "atr_protocol.priorities.l3", "Input should be"),
        ({"orders": {"reprice_step_ticks": 0}}, "orders.reprice_step_ticks", "greater than or equal to 1"),
        ({"orders": {"reprice_step_ticks": 101}}, "orders.reprice_step_ticks", "less than or equal to 100"),
        ({"orders": {"max_submit_attempts": 0}}, "orders.max_submit_attempts", "greater than or equal to 1"),
        ({"ticks": {"option_small_tick_cents": 0}}, "ticks.option_small_tick_cents", "greater than or equal"),
        ({"ticks": {"option_large_tick_cents": 101}}, "ticks.option_large_tick_cents", "less than or equal"),
        ({"ticks": {"option_threshold_cents": 0}}, "ticks.option_threshold_cents", "greater than or equal"),
        ({"ticks": {"option_large_tick_cents": 7}}, "ticks", "the large tick must be a multiple"),
        ({"ticks": {"equity_tick_cents": 0}}, "ticks.equity_tick_cents", "greater than or equal"),
    ],
)
def test_moved_settings_are_bounds_checked(layer: dict[str, Any], path: str, text: str) -> None:
    for layers in ((layer,), ({}, layer)):  # refused in the global layer and in an account layer alike
        err = _refused(*layers)
        assert err.field == path, err.problems
        assert err.problems[0].startswith(f"{path}: ")
        assert text in err.problems[0], err.problems


def test_unknown_keys_are_refused_naming_the_dotted_path() -> None:
    err = _refused({"gen": {"delta_bnd": {"min": "0.4"}}, "bogus": 1})
    assert set(err.problems) == {"gen.delta_bnd: unknown setting", "bogus: unknown setting"}
    assert err.message == "; ".join(err.problems)


def test_several_problems_are_all_reported() -> None:
    err = _refused({"broker": {"port": 0}, "risk": {"min_volume": -1}})
    assert len(err.problems) == 2
    assert {p.split(":")[0] for p in err.problems} == {"broker.port", "risk.min_volume"}


def test_direct_model_construction_also_checks() -> None:
    with pytest.raises(ValidationError):
        AllocationConfig(gen=D("0.5"))
    with pytest.raises(ValidationError):
        DeltaBand(min=D("0.5"), max=D("0.4"))


# ---------------------------------------------------------------------------------------------- layering


def test_layers_apply_in_order_and_untouched_defaults_remain() -> None:
    global_layer = {
        "gen": {"delta_band": {"min": "0.42"}, "tickers": ["TSLA"]},
        "hitl": {"premium_floor_policy": "skip"},
    }
    account_layer = {"gen": {"delta_band": {"min": "0.45"}}, "broker": {"port": 7497}}
    before = (copy.deepcopy(global_layer), copy.deepcopy(account_layer))

    cfg = effective_config(global_layer, account_layer)

    assert cfg.gen.delta_band.min == D("0.45")  # account layer wins
    assert cfg.gen.delta_band.max == D("0.50")  # sibling kept by the recursive merge
    assert cfg.gen.tickers == ["TSLA"]  # lists replace
    assert cfg.hitl.premium_floor_policy == "skip"
    assert cfg.broker.port == 7497
    assert cfg.rev == default_config().rev
    assert cfg.gen.entry == default_config().gen.entry
    assert (global_layer, account_layer) == before  # inputs not mutated


def test_merge_layers_does_not_mutate_or_alias_inputs() -> None:
    a = {"x": {"y": 1, "list": [1, 2]}, "z": 1}
    b = {"x": {"y": 2, "w": {"deep": True}}}
    snapshot = (copy.deepcopy(a), copy.deepcopy(b))

    merged = merge_layers(a, b)

    assert merged == {"x": {"y": 2, "list": [1, 2], "w": {"deep": True}}, "z": 1}
    assert (a, b) == snapshot
    merged["x"]["list"].append(3)
    merged["x"]["w"]["deep"] = False
    assert (a, b) == snapshot


def test_merge_layers_replaces_lists_and_scalars_with_dicts() -> None:
    assert merge_layers({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_layers({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert merge_layers({"a": {"b": 2}}, {"a": None}) == {"a": None}
    assert merge_layers() == {}


# ---------------------------------------------------------------------------------------------- assignments


def test_parse_assignments_builds_nested_dicts_with_exact_values() -> None:
    parsed = parse_assignments(
        [
            "gen.delta_band.min=0.42",
            'gen.tickers=["TSLA"]',
            "hitl.premium_floor_policy=skip",
            "gen.dte_max=2",
            "alerts.sms_enabled=false",
            "gen.entry.start=10:15",
            "gen.ticker_weights=null",
        ]
    )
    assert parsed == {
        "gen": {
            "delta_band": {"min": D("0.42")},
            "tickers": ["TSLA"],
            "dte_max": 2,
            "entry": {"start": "10:15"},
            "ticker_weights": None,
        },
        "hitl": {"premium_floor_policy": "skip"},
        "alerts": {"sms_enabled": False},
    }
    min_value = parsed["gen"]["delta_band"]["min"]
    assert type(min_value) is Decimal and min_value == D("0.42")
    assert type(parsed["gen"]["dte_max"]) is int

    cfg = effective_config(parsed)
    assert cfg.gen.delta_band.min == D("0.42")
    assert cfg.gen.entry.start == time(10, 15)


def test_parse_assignments_decimals_stay_exact_in_lists_and_objects() -> None:
    parsed = parse_assignments(['gen.ticker_weights={"TSLA": 0.1, "NVDA": 0.9}'])
    weights = parsed["gen"]["ticker_weights"]
    assert weights == {"TSLA": D("0.1"), "NVDA": D("0.9")}
    assert all(type(v) is Decimal for v in weights.values())
    assert effective_config(parsed).gen.ticker_weights == {"TSLA": D("0.1"), "NVDA": D("0.9")}


def test_parse_assignments_later_wins_and_non_numbers_stay_strings() -> None:
    parsed = parse_assignments(["broker.port=7497", "broker.port=4002", "calendar.timezone=Europe/London", "x=NaN"])
    assert parsed == {"broker": {"port": 4002}, "calendar": {"timezone": "Europe/London"}, "x": "NaN"}


@pytest.mark.parametrize("bad", ["gen.delta_band.min", "=1", ".x=1", "gen..min=1", "gen.=1", " =1"])
def test_malformed_assignments_are_refused_naming_them(bad: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_assignments(["hitl.premium_floor_policy=skip", bad])
    assert repr(bad) in info.value.message
    assert len(info.value.problems) == 1


# ---------------------------------------------------------------------------------------------- storage, display


def test_to_jsonable_round_trips_to_the_same_config() -> None:
    overrides = parse_assignments(
        [
            "allocation.gen=0.35",
            "allocation.rev=0.35",
            'gen.ticker_weights={"TSLA": 0.6, "NVDA": 0.4}',
            "account.initial_capital=1234567.89",
            "orders.commission_per_contract=0.65",
        ]
    )
    stored = json.loads(json.dumps(to_jsonable(overrides)))
    assert stored["allocation"]["gen"] == "0.35"
    assert stored["gen"]["ticker_weights"] == {"TSLA": "0.6", "NVDA": "0.4"}
    assert effective_config(stored) == effective_config(overrides)
    assert effective_config(stored).account.initial_capital == D("1234567.89")
    assert overrides["allocation"]["gen"] == D("0.35")  # input untouched


def test_to_jsonable_handles_times_and_enums() -> None:
    overrides = {"gen": {"entry": {"days": [Weekday.THU], "start": time(10, 5)}}}
    stored = json.loads(json.dumps(to_jsonable(overrides)))
    assert stored == {"gen": {"entry": {"days": ["THU"], "start": "10:05:00"}}}
    assert effective_config(stored) == effective_config(overrides)


def _json_leaf_paths(value: Any, prefix: str = "") -> list[str]:
    """Leaf paths of a model_dump, where lists and non-model dicts count as leaves."""
    out: list[str] = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict) and path != "gen.ticker_weights":
            out.extend(_json_leaf_paths(item, f"{path}."))
        else:
            out.append(path)
    return out


def test_flatten_covers_every_leaf_in_declaration_order() -> None:
    cfg = default_config()
    rows = flatten(cfg)
    paths = [path for path, _ in rows]
    assert len(paths) == len(set(paths))
    assert paths == [p for p in _json_leaf_paths(cfg.model_dump()) if p]
    table = dict(rows)
    assert table["allocation.gen"] == "0.40"
    assert table["atr_protocol.l3"] == "3"
    assert table["atr_protocol.auto_action.l2.automatic"] == "true"
    assert table["gen.tickers"] == '["TSLA", "NVDA"]'
    assert table["gen.entry.days"] == '["THU"]'
    assert table["gen.entry.start"] == "10:00"
    assert table["gen.ticker_weights"] == "null"
    assert table["hitl.premium_floor_policy"] == "ask"
    assert paths[0] == "account.initial_capital"
    assert paths.index("allocation.gen") < paths.index("gen.tickers") < paths.index("hitl.premium_floor_policy")


def test_flatten_display_strings_parse_back_to_the_same_config() -> None:
    cfg = effective_config({"gen": {"ticker_weights": {"TSLA": "0.25", "NVDA": "0.75"}}})
    assignments = [f"{path}={shown}" for path, shown in flatten(cfg)]
    assert effective_config(parse_assignments(assignments)) == cfg


def test_diff_paths_finds_exactly_the_changed_leaves() -> None:
    base = default_config()
    other = effective_config(
        {
            "gen": {"delta_band": {"min": "0.42"}, "tickers": ["TSLA"]},
            "allocation": {"gen": "0.30", "com": "0.40"},
            "hitl": {"premium_floor_policy": "skip"},
            "rev": {"delta_band": {"min": "0.3"}},  # same number as the default 0.30: not a change
        }
    )
    assert diff_paths(base, other) == {
        "gen.delta_band.min",
        "gen.tickers",
        "allocation.gen",
        "allocation.com",
        "hitl.premium_floor_policy",
    }
    assert diff_paths(base, base) == set()
    assert diff_paths(other, base) == diff_paths(base, other)


# ---------------------------------------------------------------------------------------------- property


@st.composite
def _cent_weights(draw: st.DrawFn) -> tuple[Decimal, Decimal, Decimal]:
    gen = draw(st.integers(min_value=0, max_value=100))
    rev = draw(st.integers(min_value=0, max_value=100 - gen))
    com = 100 - gen - rev
    return (D(gen).scaleb(-2), D(rev).scaleb(-2), D(com).scaleb(-2))


@settings(max_examples=60, deadline=None)
@given(weights=_cent_weights(), bumped=st.sampled_from(["gen", "rev", "com"]))
def test_cent_weights_summing_to_one_are_accepted_and_a_cent_more_is_refused(
    weights: tuple[Decimal, Decimal, Decimal], bumped: str
) -> None:
    layer = dict(zip(("gen", "rev", "com"), weights, strict=True))
    cfg = effective_config({"allocation": layer})
    assert (cfg.allocation.gen, cfg.allocation.rev, cfg.allocation.com) == weights
    assert sum(cfg.allocation.weights().values(), D(0)) == 1

    perturbed = dict(layer)
    perturbed[bumped] = perturbed[bumped] + D("0.01")
    err = _refused({"allocation": perturbed})
    assert err.field is not None and err.field.startswith("allocation")
