"""Week classification (domain-spec A4, B§5): the week mode (Green / Red / Chop) and the week type (11 codes).

The week mode is guessed on Monday from the prior week and confirmed after Friday's close by the same rule
applied to the week itself; it shifts the delta band only, never the trade size. The week type labels what a
sleeve's week turned out to be (P-EW ... W-IDL), judged at DTE 1 / expiry: puts by the underlying's move
against the strike, calls by its move against the cost basis.

Moves and returns are fractions (-0.05 = -5 %): ``Decimal``, or ``float`` measurements read through
``str()`` so that 0.015 compares equal to a 0.015 threshold. Everything here is pure; the numbers come from
the configuration (``AllUseConfig.week_mode`` for the mode, ``AllUseConfig.week_types`` for the type).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from alluse.domain.brokerage import SettlementKind
from alluse.domain.config import DeltaBand, WeekModeConfig, WeekTypeThresholds
from alluse.domain.errors import ValidationFailed
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.sleeves import SleeveKind

__all__ = [
    "ModeAccuracy",
    "MovementBucket",
    "SleeveWeek",
    "WeekMode",
    "WeekOutcome",
    "WeekRecord",
    "WeekType",
    "classify_week",
    "classify_week_mode",
    "confirm_week_mode",
    "delta_shift",
    "guess_week_mode",
    "movement_bucket",
    "observe_sleeve_week",
    "shifted_band",
    "type_accuracy",
]


def _measure(value: Decimal | float, field: str) -> Decimal:
    """A finite Decimal from a Decimal or a float measurement (via str, so 0.015 stays 0.015)."""
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise ValidationFailed(f"{value} is not a finite number", field=field)
    return number


# --------------------------------------------------------------------------------------------------
# Week mode
# --------------------------------------------------------------------------------------------------


class WeekMode(StrEnum):
    GREEN = "GREEN"  # bullish: full delta band
    RED = "RED"  # bearish or volatile: lower delta
    CHOP = "CHOP"  # sideways: lowest delta


def classify_week_mode(
    week_return: Decimal | float,
    realised_vol: Decimal | float,
    vol_reference: Decimal | float,
    config: WeekModeConfig,
) -> WeekMode:
    """The AG1 tree: up (>= bullish threshold) is Green; otherwise Red when volatility is high, else Chop.

    Down and flat weeks share the volatility split (down & VIX low is Chop: without support levels the
    "above support" branch is taken). Volatility is high when realised_vol >= high_vol_factor x reference.
    """
    move = _measure(week_return, "week_return")
    if move >= config.bullish_threshold:
        return WeekMode.GREEN
    return WeekMode.RED if _high_volatility(realised_vol, vol_reference, config.high_vol_factor) else WeekMode.CHOP


def _high_volatility(realised_vol: Decimal | float, reference: Decimal | float, high_vol_factor: Decimal) -> bool:
    vol = _measure(realised_vol, "realised_vol")
    ref = _measure(reference, "vol_reference")
    if vol < 0:
        raise ValidationFailed(f"volatility cannot be negative (got {vol})", field="realised_vol")
    if ref <= 0:
        raise ValidationFailed(f"volatility reference must be positive (got {ref})", field="vol_reference")
    return vol >= high_vol_factor * ref


def guess_week_mode(
    prior_week_return: Decimal | float,
    prior_week_realised_vol: Decimal | float,
    vol_reference: Decimal | float,
    config: WeekModeConfig,
) -> WeekMode:
    """Monday's guess (A4: 09:45 ET) from the prior week's index return and realised volatility."""
    return classify_week_mode(prior_week_return, prior_week_realised_vol, vol_reference, config)


def confirm_week_mode(
    week_return: Decimal | float,
    week_realised_vol: Decimal | float,
    vol_reference: Decimal | float,
    config: WeekModeConfig,
) -> WeekMode:
    """The mode the week actually had, after Friday's close: the guess's rule applied to the week itself."""
    return classify_week_mode(week_return, week_realised_vol, vol_reference, config)


def delta_shift(mode: WeekMode, config: WeekModeConfig) -> Decimal:
    """Delta added to every band in this mode (A4 defaults: Green 0, Red -0.05, Chop -0.10)."""
    shifts = {
        WeekMode.GREEN: config.green_delta_shift,
        WeekMode.RED: config.red_delta_shift,
        WeekMode.CHOP: config.chop_delta_shift,
    }
    return shifts[mode]


def shifted_band(band: DeltaBand, mode: WeekMode, config: WeekModeConfig) -> DeltaBand:
    """The band moved by the mode's shift (its width kept); refused if it would leave (0, 1).

    The mode changes delta only: nothing here knows a size, so nothing here can change one.
    """
    shift = delta_shift(mode, config)
    low, high = band.min + shift, band.max + shift
    if low <= 0 or high >= 1:
        raise ValidationFailed(
            f"{mode.value} shift {shift} moves delta band {band.min}-{band.max} to {low}-{high}, outside (0, 1)",
            field=f"week_mode.{mode.value.lower()}_delta_shift",
        )
    return DeltaBand(min=low, max=high)


_MODES = tuple(WeekMode)


@dataclass(frozen=True)
class ModeAccuracy:
    """How often Monday's guess matched the confirmed mode: a 3x3 confusion matrix, never mutated.

    ``cells[g][a]`` counts weeks guessed as ``_MODES[g]`` and confirmed as ``_MODES[a]``.
    """

    cells: tuple[tuple[int, ...], ...] = ((0, 0, 0), (0, 0, 0), (0, 0, 0))

    def record(self, guess: WeekMode, actual: WeekMode) -> ModeAccuracy:
        g, a = _MODES.index(guess), _MODES.index(actual)
        row = tuple(n + 1 if i == a else n for i, n in enumerate(self.cells[g]))
        return replace(self, cells=tuple(row if i == g else r for i, r in enumerate(self.cells)))

    @classmethod
    def from_records(cls, records: Iterable[WeekRecord]) -> ModeAccuracy:
        """Accuracy over the records that have both a guess and a confirmation."""
        accuracy = cls()
        for rec in records:
            if rec.mode_guessed is not None and rec.mode_confirmed is not None:
                accuracy = accuracy.record(rec.mode_guessed, rec.mode_confirmed)
        return accuracy

    def confusion(self, guess: WeekMode, actual: WeekMode) -> int:
        return self.cells[_MODES.index(guess)][_MODES.index(actual)]

    @property
    def count(self) -> int:
        return sum(sum(row) for row in self.cells)

    @property
    def hits(self) -> int:
        return sum(self.cells[i][i] for i in range(len(_MODES)))

    @property
    def accuracy(self) -> Fraction | None:
        """hits / count, exact; None before the first confirmed week."""
        return Fraction(self.hits, self.count) if self.count else None

    def guessed(self, mode: WeekMode) -> int:
        return sum(self.cells[_MODES.index(mode)])

    def confirmed(self, mode: WeekMode) -> int:
        return sum(row[_MODES.index(mode)] for row in self.cells)

    def precision(self, mode: WeekMode) -> Fraction | None:
        """Of the weeks guessed as `mode`, the share confirmed as `mode`."""
        n = self.guessed(mode)
        return Fraction(self.confusion(mode, mode), n) if n else None

    def recall(self, mode: WeekMode) -> Fraction | None:
        """Of the weeks confirmed as `mode`, the share guessed as `mode`."""
        n = self.confirmed(mode)
        return Fraction(self.confusion(mode, mode), n) if n else None


# --------------------------------------------------------------------------------------------------
# Week type
# --------------------------------------------------------------------------------------------------


class WeekType(StrEnum):
    P_EW = "P-EW"  # put expired worthless
    P_AWL = "P-AWL"  # put assigned within limit
    P_RO = "P-RO"  # put rolled
    P_AOL = "P-AOL"  # put assigned over limit
    P_DD = "P-DD"  # deep drawdown (GBR-4 preservation)
    C_WAP = "C-WAP"  # called away
    C_WAP_PLUS = "C-WAP+"  # called away, strong move
    C_PNO = "C-PNO"  # call premium only
    C_RO = "C-RO"  # call rolled down
    C_REC = "C-REC"  # recovery calls
    W_IDL = "W-IDL"  # idle: no trade


class WeekOutcome(StrEnum):
    """What became of the week's short option (one per week; OPEN = still open when judged at DTE 1)."""

    EXPIRED_WORTHLESS = "EXPIRED_WORTHLESS"
    ASSIGNED = "ASSIGNED"  # puts only
    CALLED_AWAY = "CALLED_AWAY"  # calls only
    ROLLED = "ROLLED"
    CLOSED = "CLOSED"  # bought back before expiry
    OPEN = "OPEN"


class MovementBucket(StrEnum):
    """AG1 WC movement buckets: >=10, 5-10, 1-5 up; ±1 flat; -1..-5, -5..-10, -10..-15, < -15."""

    STRONG_UP = "STRONG_UP"
    UP = "UP"
    SLIGHT_UP = "SLIGHT_UP"
    FLAT = "FLAT"
    SLIGHT_DOWN = "SLIGHT_DOWN"
    DOWN = "DOWN"
    STRONG_DOWN = "STRONG_DOWN"
    EXTREME_DOWN = "EXTREME_DOWN"


@dataclass(frozen=True)
class SleeveWeek:
    """One sleeve's week, as classified: `side` is the phase (put = CSP, call = covered call).

    `move` is the underlying's move at DTE 1 / expiry: for puts against the strike, for calls against the
    cost basis (-0.05 = 5 % below). An idle week (traded False) needs none of the other fields.
    """

    traded: bool
    side: OptionRight | None = None
    outcome: WeekOutcome | None = None
    move: Decimal | None = None
    roll_possible: bool = False  # a roll down/out inside the delta band for a net credit existed

    def __post_init__(self) -> None:
        if not self.traded:
            return
        if self.side is None or self.outcome is None or self.move is None:
            raise ValidationFailed("a traded week needs its side, outcome and move", field="week")
        if not self.move.is_finite():
            raise ValidationFailed(f"move {self.move} is not a finite number", field="move")
        if self.side is OptionRight.PUT and self.outcome is WeekOutcome.CALLED_AWAY:
            raise ValidationFailed("a put week cannot end called away", field="outcome")
        if self.side is OptionRight.CALL and self.outcome is WeekOutcome.ASSIGNED:
            raise ValidationFailed("a call week ends called away, not assigned", field="outcome")

    @classmethod
    def idle(cls) -> SleeveWeek:
        return cls(traded=False)


def classify_week(week: SleeveWeek, config: WeekTypeThresholds) -> WeekType:
    """The week's type code (B§5 table), with the thresholds of ``config`` (AllUseConfig.week_types).
    Precedence, first match wins:

    1. no trade: W-IDL (whatever the move);
    2. puts: below -deep_drawdown P-DD (before any outcome: preservation dominates); rolled P-RO;
       assigned P-AWL down to -assignment_limit inclusive, P-AOL below; expired worthless P-EW;
       still open / closed early, by move: >= 0 P-EW, down to -assignment_limit P-AWL, below it
       P-RO if a roll was possible else P-AOL;
    3. calls: called away C-WAP+ at >= +strong_call_away, else C-WAP (also below basis); otherwise by
       move (rolled or not): down to -assignment_limit C-PNO (flat, up, exactly -5 %), down to
       -recovery_threshold C-RO (exactly -10 %), below C-REC (P-DD is a put-week code).
    """
    if not week.traded or week.side is None or week.move is None:
        return WeekType.W_IDL
    if week.side is OptionRight.PUT:
        return _put_week(week.outcome, week.move, week.roll_possible, config)
    return _call_week(week.outcome, week.move, config)


def _put_week(outcome: WeekOutcome | None, move: Decimal, roll_possible: bool, t: WeekTypeThresholds) -> WeekType:
    if move < -t.deep_drawdown:
        return WeekType.P_DD
    within_limit = move >= -t.assignment_limit
    if outcome is WeekOutcome.ROLLED:
        return WeekType.P_RO
    if outcome is WeekOutcome.ASSIGNED:
        return WeekType.P_AWL if within_limit else WeekType.P_AOL
    if outcome is WeekOutcome.EXPIRED_WORTHLESS or move >= 0:
        return WeekType.P_EW
    if within_limit:
        return WeekType.P_AWL
    return WeekType.P_RO if roll_possible else WeekType.P_AOL


def _call_week(outcome: WeekOutcome | None, move: Decimal, t: WeekTypeThresholds) -> WeekType:
    if outcome is WeekOutcome.CALLED_AWAY:
        return WeekType.C_WAP_PLUS if move >= t.strong_call_away else WeekType.C_WAP
    if move >= -t.assignment_limit:
        return WeekType.C_PNO
    if move >= -t.recovery_threshold:
        return WeekType.C_RO
    return WeekType.C_REC


_OUTCOMES = {
    SettlementKind.EXPIRED_WORTHLESS: WeekOutcome.EXPIRED_WORTHLESS,
    SettlementKind.ASSIGNED: WeekOutcome.ASSIGNED,
    SettlementKind.CALLED_AWAY: WeekOutcome.CALLED_AWAY,
}


def observe_sleeve_week(
    sold: Sequence[tuple[OptionContract, int]],
    settled: Mapping[OptionContract, SettlementKind],
    closes_cents: Mapping[str, int],
    basis_cents: Mapping[str, int],
    *,
    rolled: Collection[OptionContract] = (),
    bought_back: Collection[OptionContract] = (),
) -> SleeveWeek:
    """A sleeve's week from what happened: the short options it sold to open (contract, contracts; a
    roll's new leg is not one), how expiry settled them or whether they were rolled or bought back
    before, the underlyings' closes and, for calls, the share cost basis per share before the
    call-away. A sleeve that sold several contracts is judged by the largest by notional (strike ×
    contracts): the position that dominates the sleeve's risk. Nothing sold: an idle week."""
    if not sold:
        return SleeveWeek.idle()
    contracts: dict[OptionContract, int] = {}
    for option, quantity in sold:  # a contract filled in parts counts as a whole
        contracts[option] = contracts.get(option, 0) + abs(quantity)
    contract = max(contracts, key=lambda c: (c.strike_cents * contracts[c], c.symbol))
    kind = settled.get(contract)
    if kind:
        outcome = _OUTCOMES.get(kind, WeekOutcome.CLOSED)
    elif contract in rolled:
        outcome = WeekOutcome.ROLLED
    else:
        outcome = WeekOutcome.CLOSED if contract in bought_back else WeekOutcome.OPEN
    reference = contract.strike_cents
    if contract.right is OptionRight.CALL:
        reference = basis_cents.get(contract.underlying, reference)
    close = closes_cents.get(contract.underlying)
    if close is None:
        raise ValidationFailed(f"no close for {contract.underlying}", field="closes_cents")
    move = Decimal(close) / Decimal(reference) - 1
    return SleeveWeek(traded=True, side=contract.right, outcome=outcome, move=move)


def movement_bucket(move: Decimal | float, config: WeekTypeThresholds) -> MovementBucket:
    """The WC bucket of a move; each boundary belongs to the bucket nearer flat (exactly -5 % is SLIGHT_DOWN)."""
    m = _measure(move, "move")
    t = config
    if abs(m) <= t.flat_band:
        return MovementBucket.FLAT
    if m > 0:
        if m < t.assignment_limit:
            return MovementBucket.SLIGHT_UP
        return MovementBucket.UP if m < t.recovery_threshold else MovementBucket.STRONG_UP
    if m >= -t.assignment_limit:
        return MovementBucket.SLIGHT_DOWN
    if m >= -t.recovery_threshold:
        return MovementBucket.DOWN
    return MovementBucket.STRONG_DOWN if m >= -t.deep_drawdown else MovementBucket.EXTREME_DOWN


# --------------------------------------------------------------------------------------------------
# The stored record of a sleeve's week
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeekRecord:
    """One sleeve's week for reports and accuracy statistics: both labels predicted, then confirmed (B§5)."""

    account_id: str
    sleeve: SleeveKind
    week_start: date  # the Monday of the week (even when Monday is a holiday)
    mode_guessed: WeekMode | None = None
    mode_confirmed: WeekMode | None = None
    type_at_entry: WeekType | None = None  # predicted pre-trade; None until prediction exists
    type_at_close: WeekType | None = None

    def __post_init__(self) -> None:
        if self.week_start.weekday() != 0:
            raise ValidationFailed(f"{self.week_start} is not a Monday", field="week_start")

    @property
    def mode_hit(self) -> bool | None:
        if self.mode_guessed is None or self.mode_confirmed is None:
            return None
        return self.mode_guessed is self.mode_confirmed

    @property
    def type_hit(self) -> bool | None:
        if self.type_at_entry is None or self.type_at_close is None:
            return None
        return self.type_at_entry is self.type_at_close


def type_accuracy(records: Iterable[WeekRecord]) -> Fraction | None:
    """Share of weeks whose predicted type matched the type at close; None if none had both."""
    hits = [rec.type_hit for rec in records if rec.type_hit is not None]
    return Fraction(sum(hits), len(hits)) if hits else None


def prior_week_measures(
    dates: npt.NDArray[np.datetime64], closes: npt.NDArray[np.float64], today: date, config: WeekModeConfig
) -> tuple[float, float, float] | None:
    """Monday's guess inputs from the index's daily closes: the last completed week's return, that
    week's realised volatility and the reference volatility over `vol_reference_sessions` (both
    annualised over 252 sessions). None without `min_history_sessions` of history."""
    week_start = np.datetime64(today - timedelta(days=today.weekday()), "D")
    before = closes[dates < week_start]
    days = dates[dates < week_start]
    if before.shape[0] < config.min_history_sessions:
        return None
    last_week = days >= days[-1] - np.timedelta64(int(days[-1].astype(date).weekday()), "D")
    start = max(int(np.argmax(last_week)) - 1, 0)  # the previous week's last close
    week_returns = np.diff(np.log(before[start:]))
    reference_returns = np.diff(np.log(before[-(config.vol_reference_sessions + 1) :]))
    annual = float(np.sqrt(252))
    week_vol = float(np.std(week_returns, ddof=0)) * annual if week_returns.size else 0.0
    return float(before[-1] / before[start] - 1), week_vol, float(np.std(reference_returns, ddof=1)) * annual


# The type a week is expected to end as, by side and week mode, before any record exists (B§5: the
# AG1 table's frequent outcome for that market: calm or rising weeks let puts expire and calls go
# away; a red week assigns puts within the limit and leaves calls with their premium only).
_PRIOR_TYPE: Mapping[tuple[OptionRight, WeekMode], WeekType] = {
    (OptionRight.PUT, WeekMode.GREEN): WeekType.P_EW,
    (OptionRight.PUT, WeekMode.CHOP): WeekType.P_EW,
    (OptionRight.PUT, WeekMode.RED): WeekType.P_AWL,
    (OptionRight.CALL, WeekMode.GREEN): WeekType.C_WAP,
    (OptionRight.CALL, WeekMode.CHOP): WeekType.C_PNO,
    (OptionRight.CALL, WeekMode.RED): WeekType.C_PNO,
}


def predict_week_type(
    side: OptionRight | None,
    mode: WeekMode | None,
    past: Sequence[tuple[OptionRight | None, WeekMode | None, WeekType]],
    config: WeekTypeThresholds,
) -> WeekType | None:
    """The week type expected at entry (B§5 "type at entry"), from what is known then: the side the
    sleeve sells and Monday's week-mode guess. With `prediction_min_weeks` past weeks of that side and
    mode, the type they most often ended as (ties: the table's order); before that, the mode's table.
    No entry: W-IDL. No mode guess: no prediction."""
    if side is None:
        return WeekType.W_IDL
    if mode is None:
        return None
    alike = [code for s, m, code in past if s is side and m is mode]
    if len(alike) < config.prediction_min_weeks:
        return _PRIOR_TYPE[(side, mode)]
    counts = Counter(alike)
    order = list(WeekType)
    return max(counts, key=lambda code: (counts[code], -order.index(code)))
