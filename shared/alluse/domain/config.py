"""ALL-USE configuration: every tunable number of the domain spec, with defaults, bounds and cross-checks.

Defaults come from domain-spec Part A (product decisions); where Part A is silent they come from Part B
(B§10 mostly). Where the two disagree Part A wins, and the field description says so.

Conventions:
- money is dollars as ``Decimal``; fractions are ``Decimal`` fractions (0.05 = 5 %); never float;
- times are America/New_York wall-clock ``datetime.time`` values without a UTC offset;
- every model is frozen and refuses unknown keys, so a typo is reported with its dotted path.

The functions at the bottom are pure (no I/O): layering of overrides (global, then account, ...),
parsing of ``dotted.key=value`` assignments, flattening for display and diffing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum, StrEnum
from functools import cache
from itertools import pairwise
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from alluse.domain.errors import ValidationFailed
from alluse.domain.sleeves import SLEEVE_ORDER, SleeveKind
from alluse.domain.ticks import TickRule

__all__ = [
    "SESSION_CLOSE",
    "SESSION_OPEN",
    "AccountConfig",
    "AlertCaps",
    "AlertsConfig",
    "AllUseConfig",
    "AllocationConfig",
    "AtrProtocolConfig",
    "BrokerConfig",
    "CalendarConfig",
    "CircuitBreakersConfig",
    "ComConfig",
    "ComReinvest",
    "CoveredCallSettings",
    "DeltaBand",
    "EntryWindow",
    "FeedbackConfig",
    "ForkSplit",
    "GenConfig",
    "HitlConfig",
    "LevelAction",
    "LevelActions",
    "LevelPriorities",
    "LifecycleConfig",
    "MarketDataConfig",
    "OrdersConfig",
    "RevConfig",
    "RevReinvest",
    "RiskConfig",
    "RollSettings",
    "RollWindow",
    "SleeveStrategy",
    "StarlabConfig",
    "TaxConfig",
    "TickRule",
    "WeekModeConfig",
    "WeekTypeThresholds",
    "Weekday",
    "default_config",
    "diff_paths",
    "effective_config",
    "flatten",
    "merge_layers",
    "parse_assignments",
    "to_jsonable",
]

SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)

_HALF = Decimal("0.5")
_HALF_NEG = Decimal("-0.5")

MAG6 = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA")


class Weekday(StrEnum):
    """Day of the week. SAT/SUN exist only so that they can be refused with a clear message."""

    MON = "MON"
    TUE = "TUE"
    WED = "WED"
    THU = "THU"
    FRI = "FRI"
    SAT = "SAT"
    SUN = "SUN"

    @property
    def is_trading_day(self) -> bool:
        return self not in (Weekday.SAT, Weekday.SUN)

    @property
    def isoweekday(self) -> int:
        """1 = Monday ... 7 = Sunday (as ``date.isoweekday()``)."""
        return _ISO_WEEKDAYS[self]

    @classmethod
    def _missing_(cls, value: object) -> Weekday | None:
        # Accept "thu" / " Thu " as THU.
        if isinstance(value, str):
            wanted = value.strip().upper()
            for member in cls:
                if member.value == wanted:
                    return member
        return None


_ISO_WEEKDAYS = {day: n for n, day in enumerate(Weekday, start=1)}


# --------------------------------------------------------------------------------------------------
# Reusable validated types
# --------------------------------------------------------------------------------------------------

_TICKER_RE = re.compile(r"[A-Z][A-Z./]{0,5}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _ticker(value: str) -> str:
    if not _TICKER_RE.fullmatch(value):
        raise ValueError(f"ticker {value!r} must be 1-6 upper-case characters A-Z, '.' or '/', starting with a letter")
    return value


def _no_duplicates(values: Sequence[Any], what: str) -> None:
    seen: set[Any] = set()
    dups: list[str] = []
    for value in values:
        if value in seen:
            dups.append(str(value.value if isinstance(value, Enum) else value))
        seen.add(value)
    if dups:
        raise ValueError(f"duplicate {what}: {', '.join(dups)}")


def _unique_tickers(values: list[str]) -> list[str]:
    _no_duplicates(values, "ticker")
    return values


def _required_tickers(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("at least one ticker is required")
    return _unique_tickers(values)


def _trading_days(days: list[Weekday]) -> list[Weekday]:
    if not days:
        raise ValueError("at least one entry day is required")
    for day in days:
        if not day.is_trading_day:
            raise ValueError(f"entry day {day.value} is not a trading day")
    _no_duplicates(days, "entry day")
    return days


def _trading_day(day: Weekday) -> Weekday:
    if not day.is_trading_day:
        raise ValueError(f"day {day.value} is not a trading day")
    return day


def _naive_time(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("times are America/New_York wall-clock times; drop the UTC offset")
    return value


def _email(value: str) -> str:
    if not _EMAIL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


def _client_id(value: str) -> str:
    if not _CLIENT_ID_RE.fullmatch(value):
        raise ValueError(f"client id {value!r} must be 1-64 characters A-Z, a-z, 0-9, '_', '.', ':' or '-'")
    return value


Ticker = Annotated[str, AfterValidator(_ticker)]
TickerList = Annotated[list[Ticker], AfterValidator(_unique_tickers)]
RequiredTickerList = Annotated[list[Ticker], AfterValidator(_required_tickers)]
ClockTime = Annotated[time, AfterValidator(_naive_time)]
TradingDay = Annotated[Weekday, AfterValidator(_trading_day)]
TradingDays = Annotated[list[Weekday], AfterValidator(_trading_days)]
Email = Annotated[str, AfterValidator(_email)]
ClientId = Annotated[str, AfterValidator(_client_id)]
Priority = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
StarlabAction = Literal[
    "SELL_TO_OPEN_PUT",
    "BUY_TO_CLOSE_PUT",
    "SELL_TO_OPEN_CALL",
    "BUY_TO_CLOSE_CALL",
    "BUY_TO_OPEN_CALL",
]
_STARLAB_ACTIONS: tuple[StarlabAction, ...] = (
    "SELL_TO_OPEN_PUT",
    "BUY_TO_CLOSE_PUT",
    "SELL_TO_OPEN_CALL",
    "BUY_TO_CLOSE_CALL",
    "BUY_TO_OPEN_CALL",
)
LevelActionKind = Literal["none", "alert", "roll_or_close", "close"]


def _d(text: str) -> Decimal:
    return Decimal(text)


class _Section(BaseModel):
    """Base of every configuration model: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------------
# Small building blocks
# --------------------------------------------------------------------------------------------------


class DeltaBand(_Section):
    """Allowed |delta| range, e.g. 0.40-0.50 = "40-50 delta" (B§1)."""

    min: Decimal = Field(gt=0, lt=1, description="Lowest allowed |delta| (0.40 = 40 delta).")
    max: Decimal = Field(gt=0, lt=1, description="Highest allowed |delta| (0.50 = 50 delta).")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"delta band inverted: min {self.min} > max {self.max}")
        if self.min == self.max:
            raise ValueError(f"delta band empty: min {self.min} must be below max {self.max}")
        return self


class EntryWindow(_Section):
    """Days and ET time window in which new positions may be opened (A4)."""

    days: TradingDays = Field(description="Trading days (MON-FRI) on which entries are allowed.")
    start: ClockTime = Field(default=time(10, 0), description="Window opens (ET, within 09:30-16:00).")
    end: ClockTime = Field(default=time(11, 0), description="Window closes (ET, after start, by 16:00).")

    @field_validator("start", "end")
    @classmethod
    def _in_session(cls, value: time) -> time:
        if value.tzinfo is None and not SESSION_OPEN <= value <= SESSION_CLOSE:
            raise ValueError(f"{value:%H:%M} is outside the 09:30-16:00 session")
        return value

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: time, info: ValidationInfo) -> time:
        start = info.data.get("start")
        if isinstance(start, time) and start.tzinfo is None and value.tzinfo is None and value <= start:
            raise ValueError(f"entry window end {value:%H:%M} must be after start {start:%H:%M}")
        return value


def _window(*days: Weekday) -> EntryWindow:
    return EntryWindow(days=list(days), start=time(10, 0), end=time(11, 0))


# --------------------------------------------------------------------------------------------------
# Account and allocation
# --------------------------------------------------------------------------------------------------


class AccountConfig(_Section):
    """Main account settings (A1, B§2)."""

    initial_capital: Decimal = Field(
        default=_d("500000"),
        gt=0,
        le=10_000_000,
        description="Starting capital in USD (A1: $500,000; B§2: up to $10M).",
    )
    brokerage_id_pattern: str = Field(
        default=r"^(DU|U)\d{5,9}$",
        min_length=1,
        description="Regex a linked brokerage account id must match (IBKR live U…, paper DU…).",
    )

    @field_validator("brokerage_id_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class AllocationConfig(_Section):
    """Sleeve target weights and deployment fractions (A2, A4 sizing)."""

    gen: Decimal = Field(default=_d("0.40"), ge=0, le=1, description="Gen-Acc share of the main account (A2: 40 %).")
    rev: Decimal = Field(default=_d("0.30"), ge=0, le=1, description="Rev-Acc share of the main account (A2: 30 %).")
    com: Decimal = Field(default=_d("0.30"), ge=0, le=1, description="Com-Acc share of the main account (A2: 30 %).")
    starlab: Decimal = Field(
        default=_d("0"), ge=0, le=1, description="STAR-LAB sleeve share (A2: 0 %; STAR-LAB cannot trade without it)."
    )
    cash_buffer_pct: Decimal = Field(
        default=_d("0.05"), ge=0, lt=1, description="Cash buffer kept in every sleeve, never deployed (A2: 5 %)."
    )
    trade_capital_pct: Decimal = Field(
        default=_d("0.95"),
        gt=0,
        le=1,
        description="Share of a sleeve's deployable cash (after the buffer) used for the week's trades (A4: 95 %).",
    )

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        total = self.gen + self.rev + self.com + self.starlab
        if total != 1:
            raise ValueError(
                f"sleeve weights must sum to 1 (got {total}: gen {self.gen} + rev {self.rev} + com {self.com}"
                f" + starlab {self.starlab})"
            )
        return self

    def weights(self) -> dict[SleeveKind, Decimal]:
        """Target weight per sleeve, in SLEEVE_ORDER order."""
        by_kind = {
            SleeveKind.GEN: self.gen,
            SleeveKind.REV: self.rev,
            SleeveKind.COM: self.com,
            SleeveKind.STARLAB: self.starlab,
        }
        return {kind: by_kind[kind] for kind in SLEEVE_ORDER}


# --------------------------------------------------------------------------------------------------
# Sleeve strategies
# --------------------------------------------------------------------------------------------------

_TICKERS_DESC = "Underlyings this sleeve trades (upper-case, unique, at least one)."
_WEIGHTS_DESC = "Capital split across tickers; keys exactly the tickers, summing to 1 (null = equal split, A4)."
_DTE_MIN_DESC = "Fewest days to expiry for new short options."
_DTE_MAX_DESC = "Most days to expiry for new short options (at least dte_min)."
_FLOOR_DESC = "Premium floor as a fraction of strike: below it the trade is not placed, HITL decides (A4)."
_TARGET_DESC = "Target weekly premium as a fraction of deployed capital."


def _tickers_field(*default: str) -> Any:
    return Field(default_factory=lambda: list(default), description=_TICKERS_DESC)


def _band_field(low: str, high: str, description: str) -> Any:
    return Field(default=DeltaBand(min=_d(low), max=_d(high)), description=description)


def _window_field(description: str, *days: Weekday) -> Any:
    return Field(default_factory=lambda: _window(*days), description=description)


def _fraction_field(default: str, description: str) -> Any:
    return Field(default=_d(default), ge=0, le=_HALF, description=description)


def _dte_ordered(value: int, info: ValidationInfo) -> int:
    low = info.data.get("dte_min")
    if isinstance(low, int) and low > value:
        raise ValueError(f"dte_min {low} is above dte_max {value}")
    return value


class SleeveStrategy(_Section):
    """Shape common to the Gen/Rev/Com strategy sections; subclasses set the defaults."""

    tickers: RequiredTickerList = Field(description=_TICKERS_DESC)
    ticker_weights: dict[Ticker, Annotated[Decimal, Field(ge=0, le=1)]] | None = Field(
        default=None, description=_WEIGHTS_DESC
    )
    delta_band: DeltaBand = Field(description="Allowed |delta| for new short options.")
    dte_min: int = Field(ge=0, le=1000, description=_DTE_MIN_DESC)
    dte_max: int = Field(ge=0, le=1000, description=_DTE_MAX_DESC)
    entry: EntryWindow = Field(description="When new positions may be opened.")
    premium_floor_pct: Decimal = Field(ge=0, le=_HALF, description=_FLOOR_DESC)
    target_weekly_pct: Decimal = Field(ge=0, le=_HALF, description=_TARGET_DESC)

    @field_validator("dte_max")
    @classmethod
    def _dte_max_ordered(cls, value: int, info: ValidationInfo) -> int:
        return _dte_ordered(value, info)

    @field_validator("ticker_weights")
    @classmethod
    def _weights_match(cls, value: dict[str, Decimal] | None, info: ValidationInfo) -> dict[str, Decimal] | None:
        tickers = info.data.get("tickers")
        if value is None or not isinstance(tickers, list):
            return value
        missing = [t for t in tickers if t not in value]
        unknown = [t for t in value if t not in tickers]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unknown:
                parts.append(f"not in tickers {', '.join(unknown)}")
            raise ValueError(f"ticker_weights keys must be exactly the tickers ({'; '.join(parts)})")
        total = sum(value.values(), Decimal(0))
        if total != 1:
            raise ValueError(f"ticker weights must sum to 1 (got {total})")
        return value

    def weight_of(self, ticker: str) -> Decimal:
        """Capital weight of one ticker: the configured weight, else an equal split."""
        if ticker not in self.tickers:
            raise KeyError(ticker)
        if self.ticker_weights is not None:
            return self.ticker_weights[ticker]
        return Decimal(1) / Decimal(len(self.tickers))


class CoveredCallSettings(_Section):
    """Gen-Acc calls on assigned shares (B§3, WS-3.1.1): ATM 40-50 delta, opened Mon/Tue, min 1.5 %."""

    delta_band: DeltaBand = _band_field("0.40", "0.50", "Allowed |delta| for covered calls on assigned shares.")
    dte_min: int = Field(default=0, ge=0, le=1000, description=_DTE_MIN_DESC)
    dte_max: int = Field(default=7, ge=0, le=1000, description=_DTE_MAX_DESC + " 0-1 DTE or the weekly.")
    entry: EntryWindow = _window_field("When covered calls may be opened (Mon/Tue).", Weekday.MON, Weekday.TUE)
    premium_floor_pct: Decimal = _fraction_field("0.015", "Minimum call premium as a fraction of strike (1.5 %).")

    @field_validator("dte_max")
    @classmethod
    def _dte_max_ordered(cls, value: int, info: ValidationInfo) -> int:
        return _dte_ordered(value, info)


class GenConfig(SleeveStrategy):
    """Gen-Acc: ATM short-put wheel, Thursday 0-1 DTE (A4, B§3, B§10)."""

    tickers: RequiredTickerList = _tickers_field("TSLA", "NVDA")
    delta_band: DeltaBand = _band_field("0.40", "0.50", "Allowed |delta| for new puts (A4: 40-50 delta ATM).")
    dte_min: int = Field(default=0, ge=0, le=1000, description=_DTE_MIN_DESC)
    dte_max: int = Field(default=1, ge=0, le=1000, description=_DTE_MAX_DESC + " A4: 0-1 DTE.")
    entry: EntryWindow = _window_field("Entry window (A4: Thursday only, 10:00-11:00 ET).", Weekday.THU)
    premium_floor_pct: Decimal = _fraction_field("0.015", _FLOOR_DESC + " A4: 1.5 %.")
    target_weekly_pct: Decimal = _fraction_field("0.02", _TARGET_DESC + " B§3: 2 %.")
    strike_offset_atr: Decimal = Field(
        default=_d("0.5"), ge=0, le=5, description="Put strike ≈ spot − this × ATR (B§3 Thursday flow)."
    )
    covered_call: CoveredCallSettings = Field(
        default_factory=CoveredCallSettings, description="Covered calls after assignment (B§3)."
    )


class RevConfig(SleeveStrategy):
    """Rev-Acc: OTM wheel on stable leaders (A4; B§10 said THU entries, Part A says Mon-Wed)."""

    tickers: RequiredTickerList = _tickers_field("AAPL", "MSFT", "AMZN", "GOOG")
    delta_band: DeltaBand = _band_field("0.30", "0.40", "Allowed |delta| for new options (A4: 30-40 delta OTM).")
    dte_min: int = Field(default=0, ge=0, le=1000, description=_DTE_MIN_DESC)
    dte_max: int = Field(default=7, ge=0, le=1000, description=_DTE_MAX_DESC + " A4: expiring that Friday, ≤ 7.")
    entry: EntryWindow = _window_field(
        "Entry window (A4: Monday-Wednesday, 10:00-11:00 ET).", Weekday.MON, Weekday.TUE, Weekday.WED
    )
    premium_floor_pct: Decimal = _fraction_field("0.01", _FLOOR_DESC + " A4: 1 %.")
    target_weekly_pct: Decimal = _fraction_field("0.01", _TARGET_DESC + " B§3: 1-2 %.")


class ComConfig(SleeveStrategy):
    """Com-Acc: shares + LEAPS + weekly covered calls on Mag-6 (A4, B§3)."""

    tickers: RequiredTickerList = _tickers_field(*MAG6)
    delta_band: DeltaBand = _band_field("0.20", "0.25", "Allowed |delta| for covered calls (A4: 20-25 delta).")
    dte_min: int = Field(default=0, ge=0, le=1000, description=_DTE_MIN_DESC)
    dte_max: int = Field(default=7, ge=0, le=1000, description=_DTE_MAX_DESC + " A4: weekly expiry.")
    entry: EntryWindow = _window_field("Entry window (A4: Monday, 10:00-11:00 ET).", Weekday.MON)
    premium_floor_pct: Decimal = _fraction_field("0", _FLOOR_DESC + " A4 sets none for Com-Acc (0 = off).")
    target_weekly_pct: Decimal = _fraction_field("0.003", _TARGET_DESC + " ≈ target_annual_pct / 52.")
    target_annual_pct: Decimal = Field(
        default=_d("0.15"), ge=0, le=1, description="Target annual return (B§3: 15-20 %/yr)."
    )
    csp_idle_cash_trigger_pct: Decimal = Field(
        default=_d("0.20"),
        ge=0,
        le=1,
        description="Sell cash-secured puts only when idle cash exceeds this fraction of the sleeve (B§3).",
    )
    round_lot: int = Field(default=100, ge=1, le=10_000, description="Shares per covered-call contract (round lot).")
    never_withdraws: bool = Field(default=True, description="Com-Acc never pays out withdrawals (A4, B§6).")


# --------------------------------------------------------------------------------------------------
# Week mode, ATR protocol, breakers, risk, orders
# --------------------------------------------------------------------------------------------------


class WeekModeConfig(_Section):
    """Green/Red/Chop regime: shifts delta only, never size (A4, B§5)."""

    green_delta_shift: Decimal = Field(
        default=_d("0"), ge=_HALF_NEG, le=_HALF, description="Delta added to every band in a Green week."
    )
    red_delta_shift: Decimal = Field(
        default=_d("-0.05"), ge=_HALF_NEG, le=_HALF, description="Delta added to every band in a Red week."
    )
    chop_delta_shift: Decimal = Field(
        default=_d("-0.10"), ge=_HALF_NEG, le=_HALF, description="Delta added to every band in a Chop week."
    )
    bullish_threshold: Decimal = Field(
        default=_d("0.015"), gt=0, le=1, description="Weekly index move at or above which the week is bullish (+1.5 %)."
    )
    bearish_threshold: Decimal = Field(
        default=_d("-0.015"), ge=-1, lt=0, description="Weekly index move at or below which the week is bearish."
    )
    trending_correlation: Decimal = Field(
        default=_d("0.7"), ge=0, le=1, description="Correlation at or above which the market is trending."
    )
    choppy_correlation: Decimal = Field(
        default=_d("0.3"), ge=0, le=1, description="Correlation at or below which the market is choppy."
    )
    high_vol_factor: Decimal = Field(
        default=_d("1"),
        gt=0,
        le=10,
        description='AG1 tree (B§5 "VIX low / VIX high"): volatility is high when it is at least this multiple'
        " of its reference (1 = at or above it).",
    )
    guess_day: TradingDay = Field(default=Weekday.MON, description="Day the week mode is guessed (A4: Monday).")
    guess_time: ClockTime = Field(default=time(9, 45), description="Time the week mode is guessed (A4: 09:45 ET).")
    index_ticker: Ticker = Field(default="SPY", description="The index whose prior week sets the guess (B§5: indices).")
    min_history_sessions: int = Field(
        default=30, ge=6, le=2520, description="Sessions of index history needed before a week mode is guessed."
    )
    vol_reference_sessions: int = Field(
        default=252,
        ge=20,
        le=2520,
        description="Sessions of the reference volatility a week's is judged against.",
    )

    @field_validator("choppy_correlation")
    @classmethod
    def _choppy_below_trending(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        trending = info.data.get("trending_correlation")
        if isinstance(trending, Decimal) and value >= trending:
            raise ValueError(f"choppy_correlation {value} must be below trending_correlation {trending}")
        return value

    def shifts(self) -> dict[str, Decimal]:
        return {"green": self.green_delta_shift, "red": self.red_delta_shift, "chop": self.chop_delta_shift}


class WeekTypeThresholds(_Section):
    """Move limits of the week-type table and movement buckets (B§5, AG1 WC), as positive fractions."""

    flat_band: Decimal = Field(default=_d("0.01"), gt=0, lt=1, description="A move within ±this is flat (1 %).")
    assignment_limit: Decimal = Field(
        default=_d("0.05"),
        gt=0,
        lt=1,
        description="Loss limit: P-AWL down to -this, P-RO/P-AOL below; C-PNO down to -this, C-RO below (5 %).",
    )
    strong_call_away: Decimal = Field(
        default=_d("0.05"), gt=0, lt=1, description="A call called away at +this or more is C-WAP+ (5 %)."
    )
    recovery_threshold: Decimal = Field(
        default=_d("0.10"), gt=0, lt=1, description="Call weeks below -this are C-REC, not C-RO (10 %)."
    )
    deep_drawdown: Decimal = Field(default=_d("0.15"), gt=0, lt=1, description="Put weeks below -this are P-DD (15 %).")
    prediction_min_weeks: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Past weeks of the same side and week mode before the type at entry is predicted from the"
        " account's own record instead of the mode's table (B§5 TAA: learning after 50+ weeks).",
    )

    @model_validator(mode="after")
    def _increasing(self) -> Self:
        steps = (self.flat_band, self.assignment_limit, self.recovery_threshold, self.deep_drawdown)
        if any(low >= high for low, high in pairwise(steps)):
            raise ValueError(
                "thresholds must increase: flat_band < assignment_limit < recovery_threshold < deep_drawdown"
                f" (got {' / '.join(str(s) for s in steps)})"
            )
        return self


class LevelAction(_Section):
    """What happens when a position reaches an ATR level."""

    action: LevelActionKind = Field(description="Planned action: none, alert, roll_or_close or close.")
    automatic: bool = Field(description="Execute the action without a human (false = alert with script, HITL acts).")


class LevelActions(_Section):
    """Action per ATR level (A5). Defaults: L2 roll-or-close and L3 close run automatically; L0/L1 do not act."""

    l0: LevelAction = Field(
        default=LevelAction(action="none", automatic=False), description="L0 (< 1×ATR): routine monitoring."
    )
    l1: LevelAction = Field(
        default=LevelAction(action="alert", automatic=False), description="L1 (≥ 1×ATR): alert, prepare a roll."
    )
    l2: LevelAction = Field(
        default=LevelAction(action="roll_or_close", automatic=True),
        description="L2 (≥ 2×ATR): roll down/out in band for a net credit, else close (A5).",
    )
    l3: LevelAction = Field(
        default=LevelAction(action="close", automatic=True), description="L3 (≥ 3×ATR): close; sleeve pauses (A5)."
    )


class RollWindow(_Section):
    """How many calendar days after the current expiry a roll's new expiry may fall."""

    min_days: int = Field(ge=1, le=366, description="Fewest days added to the expiry (a roll always goes out).")
    max_days: int = Field(ge=1, le=366, description="Most days added to the expiry (at least min_days).")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_days > self.max_days:
            raise ValueError(f"min_days {self.min_days} is above max_days {self.max_days}")
        return self


class RollSettings(_Section):
    """Roll economics per sleeve (B§3); the delta band is the sleeve's own entry band."""

    gen: RollWindow = Field(
        default=RollWindow(min_days=1, max_days=7),
        description="Gen-Acc: 0–1 DTE options roll out to at most the next weekly (not in the spec).",
    )
    rev: RollWindow = Field(
        default=RollWindow(min_days=3, max_days=4), description="Rev-Acc: an L2 roll adds 3–4 DTE (SAT test 2)."
    )
    com: RollWindow = Field(
        default=RollWindow(min_days=1, max_days=7),
        description="Com-Acc: weekly calls roll up/out to at most the next weekly (not in the spec).",
    )
    require_net_credit: bool = Field(
        default=True,
        description="A5: a roll must bring in a net credit. False (CON): a net debit up to "
        "atr_protocol.max_roll_cost_pct_of_credit of the original credit is allowed.",
    )

    def window(self, sleeve: SleeveKind) -> RollWindow:
        windows = {SleeveKind.GEN: self.gen, SleeveKind.REV: self.rev, SleeveKind.COM: self.com}
        if sleeve not in windows:
            raise ValidationFailed(f"{sleeve.label} has no roll rules", field="sleeve")
        return windows[sleeve]


class LevelPriorities(_Section):
    """Alert priority of a level change, by the level reached (B§9)."""

    l0: Priority = Field(default="LOW", description="Back to L0 (normal).")
    l1: Priority = Field(default="MEDIUM", description="L1 reached (enhanced monitoring).")
    l2: Priority = Field(default="HIGH", description="L2 reached (recovery: roll or close).")
    l3: Priority = Field(default="CRITICAL", description="L3 reached (preservation: close).")

    def of(self, level: int) -> Priority:
        """The priority of level 0-3 (an ``AtrLevel``)."""
        return (self.l0, self.l1, self.l2, self.l3)[level]


class AtrProtocolConfig(_Section):
    """ATR escalation protocol (A5, B§4)."""

    atr_period: int = Field(default=14, ge=2, le=100, description="ATR period in daily bars (A5: ATR-14; CON: 5).")
    reference: Literal["entry", "strike"] = Field(
        default="entry", description="Adverse move measured from the underlying at entry (A5) or from the strike."
    )
    l1: Decimal = Field(default=_d("1"), gt=0, le=20, description="ATR multiple that starts L1.")
    l2: Decimal = Field(default=_d("2"), gt=0, le=20, description="ATR multiple that starts L2 (above l1).")
    l3: Decimal = Field(default=_d("3"), gt=0, le=20, description="ATR multiple that starts L3 (above l2).")
    auto_action: LevelActions = Field(default_factory=LevelActions, description="Action and automation per level.")
    l3_pauses_until_next_week: bool = Field(
        default=True, description="After an L3 the sleeve takes no new entries until next week (A5)."
    )
    scan_interval_minutes: int = Field(
        default=15, ge=1, le=390, description="Protocol scan interval during the session (A5: 15 min)."
    )
    max_roll_cost_pct_of_credit: Decimal = Field(
        default=_d("0.5"), ge=0, le=1, description="A roll costing more than this share of the credit closes instead."
    )
    atr_missing_fallback_pct: Decimal = Field(
        default=_d("0.02"), gt=0, le=_HALF, description="ATR assumed when missing, as a fraction of price."
    )
    stale_multiplier: Decimal = Field(
        default=_d("1.1"), ge=1, le=3, description="Stale ATR: last valid value times this (CON)."
    )
    roll: RollSettings = Field(default_factory=RollSettings, description="Roll windows and economics per sleeve.")
    priorities: LevelPriorities = Field(
        default_factory=LevelPriorities, description="Alert priority of a level change, by the level reached (B§9)."
    )

    @field_validator("l2", "l3")
    @classmethod
    def _increasing(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        below = {"l2": "l1", "l3": "l2"}[str(info.field_name)]
        lower = info.data.get(below)
        if isinstance(lower, Decimal) and value <= lower:
            raise ValueError(f"ATR levels must increase: {info.field_name} {value} is not above {below} {lower}")
        return value


class CircuitBreakersConfig(_Section):
    """Automatic SAFE-mode triggers and VIX tiers (A6, B§4).

    B§10's 5 %/position and 20 %/day limits clash with the 95 % sizing of A4 (a 2-ticker sleeve puts ~47 % in
    one position), so both default to 1 (= no extra cap); set 0.05 / 0.20 to get the DG3 behaviour.
    """

    consecutive_losses: int = Field(default=3, ge=1, le=100, description="Losing trades in a row that trip SAFE (A6).")
    daily_drawdown_pct: Decimal = Field(
        default=_d("0.05"), gt=0, le=1, description="Daily account drawdown that trips SAFE (A6: 5 %)."
    )
    simultaneous_breaches: int = Field(
        default=2, ge=1, le=100, description="Simultaneous protocol breaches that trip SAFE (A6: 2)."
    )
    breach_min_level: int = Field(default=2, ge=1, le=3, description="ATR level counted as a breach (A6: L2+).")
    position_limit_pct: Decimal = Field(
        default=_d("1"),
        gt=0,
        le=1,
        description="Max share of a sleeve in one position; 1 = off (B§10's 5 % would block A4's 95 % sizing).",
    )
    daily_limit_pct: Decimal = Field(
        default=_d("1"),
        gt=0,
        le=1,
        description="Max share of a sleeve opened per day; 1 = off (B§10's 20 % would block A4's sizing).",
    )
    blacklist: TickerList = Field(default_factory=list, description="Tickers never traded.")
    safe_release: Literal["operator", "next_session", "next_week"] = Field(
        default="operator",
        description="Who lifts a breaker's SAFE: an operator (CON: SAFE until reset), or the protocol itself at "
        "the next session or the next week's first session.",
    )
    vix_hedged: Decimal = Field(default=_d("50"), gt=0, le=200, description="VIX above which the week is hedged.")
    vix_safe: Decimal = Field(default=_d("65"), gt=0, le=200, description="VIX above which accounts go SAFE.")
    vix_kill: Decimal = Field(default=_d("80"), gt=0, le=200, description="VIX above which trading is halted.")

    @field_validator("vix_safe", "vix_kill")
    @classmethod
    def _vix_increasing(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        below = {"vix_safe": "vix_hedged", "vix_kill": "vix_safe"}[str(info.field_name)]
        lower = info.data.get(below)
        if isinstance(lower, Decimal) and value <= lower:
            raise ValueError(f"VIX tiers must increase: {info.field_name} {value} is not above {below} {lower}")
        return value


class RiskConfig(_Section):
    """Pre-trade liquidity guards (A7)."""

    min_open_interest: int = Field(default=500, ge=0, description="Minimum open interest of the contract (A7: 500).")
    max_spread_pct_of_mid: Decimal = Field(
        default=_d("0.05"), gt=0, le=1, description="Maximum bid-ask spread as a fraction of mid (A7: 5 %)."
    )
    min_volume: int = Field(default=100, ge=0, description="Minimum daily volume of the contract (A7: 100).")
    max_pct_of_adv: Decimal = Field(
        default=_d("0.10"), gt=0, le=1, description="Maximum order size as a fraction of average daily volume (A7)."
    )
    adv_sessions: int = Field(
        default=20, ge=1, le=250, description="Sessions of daily volume averaged for a share order's ADV (A7)."
    )


class OrdersConfig(_Section):
    """Order working rules (A8, B§3 CON orders)."""

    reprice_after_seconds: int = Field(
        default=3, ge=1, le=600, description="Reprice a resting limit toward the touch after this delay (3 s)."
    )
    timeout_seconds: int = Field(
        default=60, ge=1, le=3600, description="Cancel a working order after this long (above reprice delay)."
    )
    max_price_concession_pct: Decimal = Field(
        default=_d("0.05"), ge=0, le=_HALF, description="Accept at most this much worse than mid (5 %)."
    )
    slice_above_contracts: int = Field(
        default=50, ge=1, le=100_000, description="Orders above this many contracts are sliced (CON: 50)."
    )
    commission_per_contract: Decimal = Field(
        default=_d("0.65"), ge=0, le=100, description="Estimated commission per option contract in USD (IBKR-like)."
    )
    commission_min_per_order: Decimal = Field(
        default=_d("1.00"), ge=0, le=1000, description="Minimum commission per order in USD."
    )
    tif: Literal["DAY", "GTC"] = Field(default="DAY", description="Time in force of new orders.")
    reprice_step_ticks: int = Field(
        default=1, ge=1, le=100, description="Ticks a reprice moves the limit toward the touch."
    )
    max_submit_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Placements of one ref without any broker record before reconciliation stops resubmitting"
        " and asks a human (the order stays in flight).",
    )

    @field_validator("timeout_seconds")
    @classmethod
    def _timeout_after_reprice(cls, value: int, info: ValidationInfo) -> int:
        reprice = info.data.get("reprice_after_seconds")
        if isinstance(reprice, int) and value <= reprice:
            raise ValueError(f"timeout_seconds {value} must exceed reprice_after_seconds {reprice}")
        return value


# --------------------------------------------------------------------------------------------------
# Lifecycle, tax
# --------------------------------------------------------------------------------------------------


class _Pair(_Section):
    """Two fractions that must sum to 1."""

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        values = [getattr(self, name) for name in type(self).model_fields]
        total = sum(values, Decimal(0))
        if total != 1:
            names = " + ".join(type(self).model_fields)
            raise ValueError(f"{names} must sum to 1 (got {total})")
        return self


class ForkSplit(_Pair):
    """How a Gen-Acc fork's child is split (A9: 50/50)."""

    gen: Decimal = Field(default=_d("0.5"), ge=0, le=1, description="Child's Gen-Acc share.")
    com: Decimal = Field(default=_d("0.5"), ge=0, le=1, description="Child's Com-Acc share.")


class RevReinvest(_Pair):
    """Rev-Acc quarterly reinvestment (A11: 75 % wheel / 25 % LEAPS)."""

    wheel: Decimal = Field(default=_d("0.75"), ge=0, le=1, description="Share kept as wheel capital.")
    leaps: Decimal = Field(default=_d("0.25"), ge=0, le=1, description="Share used to buy LEAPS calls.")


class ComReinvest(_Pair):
    """Com-Acc quarterly reinvestment (A11: 75 % shares / 25 % LEAPS)."""

    shares: Decimal = Field(default=_d("0.75"), ge=0, le=1, description="Share used to buy shares.")
    leaps: Decimal = Field(default=_d("0.25"), ge=0, le=1, description="Share used to buy LEAPS calls.")


def _reinvest_months(months: list[int]) -> list[int]:
    if not months:
        raise ValueError("at least one reinvestment month is required")
    _no_duplicates(months, "month")
    return months


class LifecycleConfig(_Section):
    """Fork, merge and reinvestment watchdogs (A9-A11, B§6)."""

    gen_fork_threshold: Decimal = Field(
        default=_d("50000"), gt=0, le=100_000_000, description="Gen-Acc post-tax surplus that forks a child (A9)."
    )
    rev_fork_threshold: Decimal = Field(
        default=_d("500000"),
        gt=0,
        le=100_000_000,
        description="Rev-Acc post-tax surplus that forks a new 40/30/30 account (A9).",
    )
    fork_split: ForkSplit = Field(default_factory=ForkSplit, description="Gen fork child split (A9: 50/50).")
    merge_threshold: Decimal = Field(
        default=_d("500000"),
        gt=0,
        le=100_000_000,
        description="Forked account equity that merges it into the parent's Com-Acc (A10; ≥ gen fork threshold).",
    )
    merge_policy: Literal["liquidate", "in_kind"] = Field(
        default="liquidate", description="Merge by liquidating positions (A10 default) or moving them in kind."
    )
    fork_cadence: Literal["quarterly", "weekly", "daily"] = Field(
        default="quarterly", description="How often fork/merge is evaluated (A9: quarterly; B§10 said 60 min)."
    )
    reinvest_months: list[Annotated[int, Field(ge=1, le=12)]] = Field(
        default_factory=lambda: [1, 4, 7, 10],
        description="Months whose first session runs quarterly reinvestment (A11: Jan/Apr/Jul/Oct; B§10 3/6/9/12).",
    )
    rev_reinvest: RevReinvest = Field(default_factory=RevReinvest, description="Rev-Acc reinvestment split (A11).")
    com_reinvest: ComReinvest = Field(default_factory=ComReinvest, description="Com-Acc reinvestment split (A11).")
    reinvest_basis: Literal["post_tax", "pre_tax"] = Field(
        default="post_tax", description="Reinvest from post-tax (default) or pre-tax net premium."
    )
    leaps_months_min: int = Field(default=12, ge=1, le=60, description="Shortest LEAPS expiry in months (A11).")
    leaps_months_max: int = Field(default=24, ge=1, le=60, description="Longest LEAPS expiry in months (A11).")
    leaps_delta: DeltaBand = _band_field("0.70", "0.80", "Delta band of LEAPS calls bought (A11: 0.70-0.80).")
    partial_fill_policy: Literal["keep", "cancel_rest", "retry"] = Field(
        default="keep",
        description="Reinvest order partly filled: keep (the rest works until the timeout), cancel_rest (at once),"
        " or retry (at the timeout the rest is placed again at the touch).",
    )
    insufficient_funds_policy: Literal["scale_down", "skip"] = Field(
        default="scale_down", description="Not enough cash for a reinvest order: scale it down or skip it."
    )

    @field_validator("reinvest_months")
    @classmethod
    def _months(cls, value: list[int]) -> list[int]:
        return _reinvest_months(value)

    @field_validator("merge_threshold")
    @classmethod
    def _merge_above_fork(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        fork = info.data.get("gen_fork_threshold")
        if isinstance(fork, Decimal) and value < fork:
            raise ValueError(f"merge_threshold {value} is below gen_fork_threshold {fork}")
        return value

    @field_validator("leaps_months_max")
    @classmethod
    def _leaps_ordered(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("leaps_months_min")
        if isinstance(low, int) and low > value:
            raise ValueError(f"leaps_months_min {low} is above leaps_months_max {value}")
        return value


class TaxConfig(_Section):
    """Tax estimates, not advice (A12, B§9)."""

    short_term_rate: Decimal = Field(default=_d("0.30"), ge=0, le=1, description="Short-term gains rate (A12: 30 %).")
    long_term_rate: Decimal = Field(default=_d("0.15"), ge=0, le=1, description="Long-term gains rate (A12: 15 %).")
    dividend_rate: Decimal = Field(default=_d("0.15"), ge=0, le=1, description="Qualified dividend rate.")
    long_term_after_days: int = Field(
        default=365, ge=1, le=3650, description="A lot held more than this many days is long-term."
    )
    lot_method: Literal["FIFO"] = Field(default="FIFO", description="Lot matching method (A12: FIFO per sleeve).")
    reserve_pct: Decimal = Field(
        default=_d("0.30"), ge=0, le=1, description="Share of realized gains reserved for tax (TAA: 30 %)."
    )
    wash_sale_days: int = Field(
        default=30,
        ge=0,
        le=366,
        description="A share sale at a loss is a wash sale when shares of the ticker are bought this many calendar"
        " days before or after it (0 turns the rule off).",
    )


# --------------------------------------------------------------------------------------------------
# Alerts, data, broker, feedback, calendar, STAR-LAB, HITL
# --------------------------------------------------------------------------------------------------


class AlertCaps(_Section):
    """Alerts per hour per type before throttling (B§9)."""

    protocol_breach: int = Field(default=5, ge=1, le=10_000, description="PROTOCOL_BREACH alerts per hour.")
    trade_opportunity: int = Field(default=10, ge=1, le=10_000, description="TRADE_OPPORTUNITY alerts per hour.")
    system_status: int = Field(default=3, ge=1, le=10_000, description="SYSTEM_STATUS alerts per hour.")
    account_management: int = Field(default=5, ge=1, le=10_000, description="ACCOUNT_MANAGEMENT alerts per hour.")
    technical_alert: int = Field(default=10, ge=1, le=10_000, description="TECHNICAL_ALERT alerts per hour.")
    compliance: int = Field(default=5, ge=1, le=10_000, description="COMPLIANCE alerts per cap window.")
    security: int = Field(default=5, ge=1, le=10_000, description="SECURITY alerts per cap window.")
    low_buffer: int = Field(default=5, ge=1, le=10_000, description="LOW_BUFFER alerts per cap window.")


def _unique_emails(values: list[str]) -> list[str]:
    _no_duplicates(values, "recipient")
    return values


class AlertsConfig(_Section):
    """Alert channels, recipients and throttling (B§9)."""

    email_enabled: bool = Field(default=True, description="Send alerts by e-mail (all priorities).")
    sms_enabled: bool = Field(default=True, description="Send alerts by SMS (sms_min_priority and above).")
    dashboard_enabled: bool = Field(default=True, description="Show alerts on the dashboard.")
    recipients: Annotated[list[Email], AfterValidator(_unique_emails)] = Field(
        default_factory=list, description="E-mail recipients (account owner)."
    )
    sms_min_priority: Priority = Field(default="HIGH", description="Lowest priority sent by SMS (B§9: HIGH).")
    off_hours_min_priority: Priority = Field(
        default="HIGH", description="Lowest priority sent outside 09:30-16:00 ET weekdays (B§9: HIGH)."
    )
    hourly_caps: AlertCaps = Field(default_factory=AlertCaps, description="Hourly caps per alert type.")
    cap_window_seconds: int = Field(
        default=3600, ge=1, le=86_400, description="Rolling window of the hourly caps (B§9: one hour)."
    )
    dedupe_window_seconds: int = Field(
        default=3600, ge=1, le=7 * 86_400, description="Same dedupe key within this many seconds is suppressed."
    )
    queue_size: int = Field(default=1000, ge=1, le=1_000_000, description="Alerts kept in the priority queue.")
    poll_seconds: int = Field(default=5, ge=1, le=3600, description="Alert queue poll interval in seconds.")


def _unique_ints(values: list[int]) -> list[int]:
    _no_duplicates(values, "value")
    return values


def _session_times(values: list[time]) -> list[time]:
    for value in values:
        if value.tzinfo is None and not SESSION_OPEN <= value <= SESSION_CLOSE:
            raise ValueError(f"{value:%H:%M} is outside the 09:30-16:00 session")
    _no_duplicates(values, "time")
    return values


class MarketDataConfig(_Section):
    """What market data is pulled and when (B§10 Data)."""

    watchlist: TickerList = Field(
        default_factory=lambda: ["SPY", "QQQ", "DIA", "IWM"], description="Index ETFs watched for week mode."
    )
    etf_premium_tickers: TickerList = Field(
        default_factory=lambda: ["SPY", "QQQ"], description="ETFs whose option premiums are scanned intraday."
    )
    etf_scan_minutes: int = Field(default=30, ge=1, le=390, description="ETF premium scan interval in minutes.")
    strikes_around_atm: int = Field(default=3, ge=0, le=50, description="ETF scan: strikes each side of the money.")
    etf_dtes: Annotated[list[Annotated[int, Field(ge=0, le=1000)]], AfterValidator(_unique_ints)] = Field(
        default_factory=lambda: [0, 7], description="ETF scan: expiries (days to expiry) pulled."
    )
    chain_tickers: TickerList = Field(
        default_factory=lambda: list(MAG6), description="Underlyings whose option chains are pulled (Mag-6)."
    )
    chain_strikes_around_atm: int = Field(default=6, ge=0, le=100, description="Chains: strikes each side of ATM.")
    max_dte: int = Field(default=30, ge=0, le=1000, description="Chains: furthest expiry pulled, in days.")
    chain_pull_times: Annotated[list[ClockTime], AfterValidator(_session_times)] = Field(
        default_factory=lambda: [SESSION_OPEN, SESSION_CLOSE],
        description="Chains pulled at these ET times (B§10: open and close).",
    )
    daily_pull_time: ClockTime = Field(default=time(16, 30), description="Daily bars pulled at this ET time.")
    stale_after_seconds: int = Field(
        default=30, ge=1, le=3600, description="A quote older than this is stale (CON: 30 s)."
    )


class BrokerConfig(_Section):
    """Broker gateway connection (B§10 Broker: IBKR TWS)."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=253, description="TWS / IB Gateway host.")
    port: int = Field(default=7496, ge=1, le=65535, description="TWS / IB Gateway port (TWS live 7496, paper 7497).")
    client_id: int = Field(default=1, ge=0, le=2_147_483_647, description="API client id.")
    mode: Literal["paper", "live"] = Field(default="paper", description="Paper or live trading.")


class FeedbackConfig(_Section):
    """Weekly review and quarterly rule mining (B§9, B§10 Feedback)."""

    weekly_day: Weekday = Field(default=Weekday.SAT, description="Day of the weekly feedback cycle.")
    weekly_time: ClockTime = Field(default=time(10, 0), description="ET time of the weekly feedback cycle.")
    quarterly_window_days: int = Field(default=90, ge=7, le=366, description="Look-back of the quarterly review.")
    min_trades: int = Field(default=20, ge=1, le=100_000, description="Trades needed before an MRR rule is proposed.")
    mrr_confidence: Decimal = Field(
        default=_d("0.7"), gt=0, le=1, description="Minimum confidence of a proposed MRR rule."
    )


class CalendarConfig(_Section):
    """Trading calendar (A3)."""

    timezone: str = Field(default="America/New_York", description="IANA time zone of all schedules (A3).")
    exchange: str = Field(
        default="XNYS", pattern=r"^[A-Z]{4}$", description="Exchange calendar (MIC code, A3: XNYS = NYSE)."
    )
    holiday_policy: Literal["next_session", "skip"] = Field(
        default="next_session",
        description="Routine on a holiday: run at the next session of the same week, or skip it (A3).",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


def _unique_actions(values: list[str]) -> list[str]:
    _no_duplicates(values, "action")
    return values


def _unique_clients(values: list[str]) -> list[str]:
    _no_duplicates(values, "client")
    return values


class StarlabConfig(_Section):
    """Limits on STAR-LAB instructions (A13, B§8)."""

    max_order_contracts: int = Field(default=50, ge=1, le=100_000, description="Largest STAR-LAB order, in contracts.")
    allowed_actions: Annotated[list[StarlabAction], AfterValidator(_unique_actions)] = Field(
        default_factory=lambda: list(_STARLAB_ACTIONS),
        description="Trade actions STAR-LAB may request.",
    )
    granted_clients: Annotated[list[ClientId], AfterValidator(_unique_clients)] = Field(
        default_factory=list, description="STAR-LAB client ids granted this account's STAR-LAB sleeve."
    )


class HitlConfig(_Section):
    """Human-in-the-loop policies (A4)."""

    premium_floor_policy: Literal["skip", "ask", "place"] = Field(
        default="ask", description="Premium below the floor: skip, ask a human (HIGH alert), or place anyway."
    )


# --------------------------------------------------------------------------------------------------
# Root
# --------------------------------------------------------------------------------------------------


class AllUseConfig(_Section):
    """Every setting of ALL-USE. Section names are a contract used across the code base."""

    account: AccountConfig = Field(default_factory=AccountConfig, description="Main account (A1).")
    allocation: AllocationConfig = Field(default_factory=AllocationConfig, description="Sleeve weights (A2).")
    gen: GenConfig = Field(default_factory=GenConfig, description="Gen-Acc strategy (A4).")
    rev: RevConfig = Field(default_factory=RevConfig, description="Rev-Acc strategy (A4).")
    com: ComConfig = Field(default_factory=ComConfig, description="Com-Acc strategy (A4).")
    week_mode: WeekModeConfig = Field(default_factory=WeekModeConfig, description="Week mode (A4, B§5).")
    week_types: WeekTypeThresholds = Field(
        default_factory=WeekTypeThresholds, description="Week-type thresholds (B§5, AG1 WC)."
    )
    atr_protocol: AtrProtocolConfig = Field(default_factory=AtrProtocolConfig, description="ATR protocol (A5).")
    circuit_breakers: CircuitBreakersConfig = Field(
        default_factory=CircuitBreakersConfig, description="Circuit breakers (A6)."
    )
    risk: RiskConfig = Field(default_factory=RiskConfig, description="Pre-trade liquidity guards (A7).")
    orders: OrdersConfig = Field(default_factory=OrdersConfig, description="Order working rules (A8).")
    ticks: TickRule = Field(
        default_factory=TickRule, description="Option and equity price grid that limit prices are put on."
    )
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig, description="Fork/merge/reinvest (A9-A11).")
    tax: TaxConfig = Field(default_factory=TaxConfig, description="Tax estimates (A12).")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alerts (B§9).")
    market_data: MarketDataConfig = Field(default_factory=MarketDataConfig, description="Market data pulls (B§10).")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="Broker connection (B§10).")
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig, description="Feedback cycle (B§10).")
    calendar: CalendarConfig = Field(default_factory=CalendarConfig, description="Trading calendar (A3).")
    starlab: StarlabConfig = Field(default_factory=StarlabConfig, description="STAR-LAB limits (A13).")
    hitl: HitlConfig = Field(default_factory=HitlConfig, description="Human-in-the-loop policies (A4).")

    @field_validator("week_mode")
    @classmethod
    def _shifted_bands_stay_valid(cls, value: WeekModeConfig, info: ValidationInfo) -> WeekModeConfig:
        """Every week-mode delta shift must keep every sleeve's delta band inside (0, 1)."""
        problems: list[str] = []
        for sleeve in ("gen", "rev", "com"):
            strategy = info.data.get(sleeve)
            if not isinstance(strategy, SleeveStrategy):
                continue
            band = strategy.delta_band
            for mode, shift in value.shifts().items():
                if band.min + shift <= 0 or band.max + shift >= 1:
                    problems.append(
                        f"{mode}_delta_shift {shift} moves {sleeve}.delta_band {band.min}-{band.max}"
                        f" to {band.min + shift}-{band.max + shift}, outside (0, 1)"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return value


# --------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------


def default_config() -> AllUseConfig:
    """The product defaults (Part A, then Part B)."""
    return AllUseConfig()


@cache
def _defaults_as_json() -> Mapping[str, Any]:
    """The defaults as plain JSON data, computed once; merge_layers copies it, never mutates it."""
    return default_config().model_dump(mode="json")


def _copy_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _copy_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_value(item) for item in value]
    return value


def _merge_into(target: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        current = target.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            _merge_into(current, value)
        else:
            target[key] = _copy_value(value)


def merge_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge nested dicts, later layers winning; dicts merge key by key, lists and scalars replace.

    The result shares nothing mutable with the inputs, which are never modified.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        _merge_into(merged, layer)
    return merged


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "config"


def _problem_message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown setting"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _validation_failed(exc: ValidationError) -> ValidationFailed:
    errors = exc.errors(include_url=False)
    problems = [f"{_dotted(tuple(err['loc']))}: {_problem_message(err)}" for err in errors]
    first = _dotted(tuple(errors[0]["loc"])) if errors else None
    return ValidationFailed("; ".join(problems), field=first, problems=problems)


def effective_config(*override_layers: Mapping[str, Any]) -> AllUseConfig:
    """Defaults, then each override layer in order (e.g. global, then account), validated as a whole.

    Raises ValidationFailed with one "dotted.path: message" problem per error.
    """
    merged = merge_layers(_defaults_as_json(), *override_layers)
    try:
        return AllUseConfig.model_validate(merged)
    except ValidationError as exc:
        raise _validation_failed(exc) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError:
        return raw


def parse_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """Turn ["gen.delta_band.min=0.42", 'gen.tickers=["TSLA"]'] into a nested override dict.

    Values are JSON (floats become exact Decimals, ints stay int), else the raw string.
    Later assignments win, like later layers.
    """
    problems: list[str] = []
    layers: list[dict[str, Any]] = []
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        parts = key.strip().split(".")
        if not sep or any(not part or part != part.strip() or " " in part for part in parts):
            problems.append(f"malformed assignment {assignment!r}: expected dotted.key=value")
            continue
        node: Any = _parse_value(raw.strip())
        for part in reversed(parts):
            node = {part: node}
        layers.append(node)
    if problems:
        raise ValidationFailed("; ".join(problems), problems=problems)
    return merge_layers(*layers)


def _leaves(model: BaseModel, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        path = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.extend(_leaves(value, f"{path}."))
        else:
            out.append((path, value))
    return out


def _display(value: Any, *, nested: bool = False) -> str:
    """Display form that parse_assignments reads back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, time):
        value = value.strftime("%H:%M") if value.second == 0 and value.microsecond == 0 else value.isoformat()
    if isinstance(value, Decimal | int):
        return str(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{json.dumps(str(k))}: {_display(v, nested=True)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, set | frozenset):
        value = sorted(value, key=str)  # sets have no order of their own: show them sorted, stable across runs
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_display(item, nested=True) for item in value) + "]"
    return json.dumps(str(value)) if nested else str(value)


def flatten(config: AllUseConfig) -> list[tuple[str, str]]:
    """Every leaf setting as (dotted path, display string), in declaration order."""
    return [(path, _display(value)) for path, value in _leaves(config)]


def diff_paths(base: AllUseConfig, other: AllUseConfig) -> set[str]:
    """Dotted paths of the leaves whose values differ (Decimal("0.4") equals Decimal("0.40"))."""
    theirs = dict(_leaves(other))
    return {path for path, value in _leaves(base) if theirs.get(path) != value}


def to_jsonable(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of an override dict: Decimals become strings (exact), times ISO strings, enums values."""

    def convert(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(key): convert(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [convert(item) for item in value]
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, datetime | date | time):
            return value.isoformat()
        return value

    return {str(key): convert(item) for key, item in overrides.items()}
