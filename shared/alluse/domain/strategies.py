"""Weekly entries of the three sleeves (domain-spec A4, B§3): which option each sleeve sells, how many, at what price.

Pure functions of the sleeve's book, the option chains, the clock (``now``, timezone-aware) and the
configuration; nothing here places an order or sends an alert, a plan says what should happen.

Decisions (the spec leaves them open):

- Cash: ``SleeveBook.free_cash_cents`` is the sleeve's uncommitted cash *including* its buffer, as the
  ledger sees it; deployable cash = free cash − buffer (never below 0), so the buffer is never deployed.
  The week's put capital is ``trade_capital_pct`` of the deployable cash, rounded down to the cent.
- Phases (the wheel): a ticker with at least one contract's worth of shares not yet covered is in the
  covered-call phase (Gen: ``gen.covered_call`` rules; Rev: Rev's rules; Com: Com's rules, round lots);
  shares already covered by open short calls are not covered twice, and a ticker holding shares gets no
  puts (puts resume after the call-away). Held tickers outside the sleeve's list still get covered calls.
- Puts go only to tickers without an open short put (re-running the routine inside the window does not
  sell twice); the put capital is split, by ticker weight, over those tickers only (weights renormalised),
  so a ticker that found nothing on Monday gets its share on Tuesday. Tickers without a chain or a strike
  keep their share idle (no concentration).
- Com-Acc sells cash-secured puts only when deployable cash exceeds ``csp_idle_cash_trigger_pct`` of the
  sleeve's value, with its own band, DTE and window (20–25Δ weekly, Monday): conservative, like its calls.
- Entry window: America/New_York, configured days, ``start <= time < end`` (10:00 in, 11:00 out).
  Gen-Acc's covered calls have their own window (Mon/Tue), its puts Thursday.
- Expiry: the nearest listed expiry with ``dte_min <= DTE <= dte_max`` (calendar days from now's NY date).
- Strike: among contracts with a bid and a finite delta, |delta| inside the week-mode-shifted band
  (inclusive), nearest the band's middle; a tie goes to the smaller |delta| (further out of the money).
- Limit price: the mid rounded *up* onto the tick grid (``config.ticks``; a seller does not offer below the
  fair mid; the order layer reprices toward the bid later), then never below the bid.
- Gen's ``strike_offset_atr`` is not used: the chain's deltas pick the strike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

import numpy as np

from alluse.domain.brokerage import Side
from alluse.domain.config import (
    AllUseConfig,
    CoveredCallSettings,
    DeltaBand,
    EntryWindow,
    Priority,
    SleeveStrategy,
)
from alluse.domain.instruments import OPTION_MULTIPLIER, OptionContract, OptionRight
from alluse.domain.market import NEW_YORK, OptionChain, OptionQuote
from alluse.domain.money import split_by_weights
from alluse.domain.sleeves import SleeveKind
from alluse.domain.ticks import TickRule

__all__ = [
    "EntryDecision",
    "EntryPlan",
    "EntryRule",
    "SkipCode",
    "SleeveBook",
    "SleevePlan",
    "TickerSkip",
    "choose_expiry",
    "choose_strike_row",
    "deployable_cents",
    "entry_window_open",
    "in_entry_window",
    "limit_price_cents",
    "plan_entries",
    "shifted_band",
]

FLOOR_ALERT_PRIORITY: Priority = "HIGH"  # A4: below the premium floor a HIGH alert asks a human


class EntryDecision(StrEnum):
    PLACE = "PLACE"  # send the order (with an alert if below the floor and the policy is "place")
    AWAIT_HUMAN = "AWAIT_HUMAN"  # below the floor, policy "ask": a HIGH alert asks a human, no order yet
    SKIP = "SKIP"  # below the floor, policy "skip": no order, a HIGH alert says so


class SkipCode(StrEnum):
    PAUSED = "PAUSED"  # ATR L3 paused the sleeve for the week
    OUTSIDE_WINDOW = "OUTSIDE_WINDOW"
    NO_CHAIN = "NO_CHAIN"
    NO_EXPIRY = "NO_EXPIRY"  # no listed expiry inside [dte_min, dte_max]
    NO_DELTA_IN_BAND = "NO_DELTA_IN_BAND"
    SIZE_ZERO = "SIZE_ZERO"  # the ticker's capital does not secure one contract
    ALREADY_COVERED = "ALREADY_COVERED"  # every round lot already has a short call
    PUT_ALREADY_OPEN = "PUT_ALREADY_OPEN"
    ENTERED = "ENTERED"  # this week's entry for the ticker and right was placed already
    IDLE_CASH_BELOW_TRIGGER = "IDLE_CASH_BELOW_TRIGGER"  # Com-Acc sells puts only with high idle cash


@dataclass(frozen=True)
class TickerSkip:
    code: SkipCode
    detail: str


@dataclass(frozen=True)
class SleeveBook:
    """What a sleeve holds when it plans its entries.

    ``free_cash_cents`` includes the buffer (see the module notes); ``open_short_options`` maps each open
    option position to its signed quantity (short < 0); ``value_cents`` is the sleeve's value (cash, shares
    and options at mark), used for Com-Acc's idle-cash trigger.
    """

    sleeve: SleeveKind
    free_cash_cents: int
    buffer_cents: int
    value_cents: int = 0
    shares: Mapping[str, int] = field(default_factory=dict)
    open_short_options: Mapping[OptionContract, int] = field(default_factory=dict)
    paused: bool = False
    entered: frozenset[tuple[str, OptionRight]] = frozenset()  # this week's entries placed already

    def __post_init__(self) -> None:
        for name in ("free_cash_cents", "buffer_cents", "value_cents"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if any(qty < 0 for qty in self.shares.values()):
            raise ValueError("share holdings must not be negative (no short stock in a sleeve)")

    def short_quantity(self, ticker: str, right: OptionRight) -> int:
        """Contracts sold short on `ticker` with `right`, all expiries."""
        return sum(
            -qty
            for contract, qty in self.open_short_options.items()
            if contract.underlying == ticker and contract.right is right and qty < 0
        )


@dataclass(frozen=True)
class EntryPlan:
    sleeve: SleeveKind
    contract: OptionContract
    side: Side
    quantity: int
    limit_price_cents: int  # per share
    premium_pct: Decimal  # limit price ÷ strike
    delta: float
    cash_required_cents: int  # strike × 100 × quantity for a put; 0 for a covered call
    delta_band: tuple[Decimal, Decimal]  # the week-mode-shifted band the strike was chosen in
    decision: EntryDecision
    below_floor: bool
    alert_reason: str | None
    alert_priority: Priority | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class SleevePlan:
    plans: list[EntryPlan]
    skipped: dict[str, TickerSkip]

    @property
    def to_place(self) -> list[EntryPlan]:
        return [plan for plan in self.plans if plan.decision is EntryDecision.PLACE]

    @property
    def cash_required_cents(self) -> int:
        return sum(plan.cash_required_cents for plan in self.plans)


@dataclass(frozen=True)
class EntryRule:
    """The settings of one kind of entry (a sleeve's puts, or its covered calls)."""

    right: OptionRight
    delta_band: DeltaBand
    dte_min: int
    dte_max: int
    entry: EntryWindow
    premium_floor_pct: Decimal

    @classmethod
    def of(cls, settings: SleeveStrategy | CoveredCallSettings, right: OptionRight) -> EntryRule:
        return cls(
            right,
            settings.delta_band,
            settings.dte_min,
            settings.dte_max,
            settings.entry,
            settings.premium_floor_pct,
        )


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def _ny(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(NEW_YORK)


def in_entry_window(sleeve_config: SleeveStrategy | CoveredCallSettings | EntryRule, now: datetime) -> bool:
    """True on a configured day, from ``start`` (included) to ``end`` (excluded), New York time."""
    window = sleeve_config.entry
    local = _ny(now)
    on_day = local.isoweekday() in {day.isoweekday for day in window.days}
    return on_day and window.start <= local.time().replace(tzinfo=None) < window.end


def entry_window_open(sleeve: SleeveKind, config: AllUseConfig, now: datetime) -> bool:
    """Whether any of the sleeve's entries (its puts, its calls) may open now: outside every window a
    step has nothing to plan for the sleeve, not even a chain to read."""
    return in_entry_window(_strategy(sleeve, config), now) or in_entry_window(_call_rule(sleeve, config), now)


def shifted_band(band: DeltaBand, delta_shift: Decimal) -> tuple[Decimal, Decimal]:
    """The band moved by the week mode's delta shift (delta only, never size)."""
    return band.min + delta_shift, band.max + delta_shift


def choose_expiry(chain: OptionChain, today: date, dte_min: int, dte_max: int) -> date | None:
    """The nearest listed expiry whose calendar DTE from `today` is within [dte_min, dte_max]."""
    inside = [expiry for expiry in chain.expiries() if dte_min <= (expiry - today).days <= dte_max]
    return min(inside) if inside else None


def choose_strike_row(
    chain: OptionChain, expiry: date, right: OptionRight, band: tuple[Decimal, Decimal]
) -> int | None:
    """The row whose |delta| lies in `band` (inclusive) nearest its middle; ties to the smaller |delta|.

    Rows without a bid or with a non-finite delta cannot be sold and are ignored.
    """
    rows = chain.rows(expiry, right)
    low, high = float(band[0]), float(band[1])
    size = np.abs(chain.delta[rows])
    usable = np.isfinite(size) & (chain.bid_cents[rows] > 0) & (size >= low) & (size <= high)
    if not usable.any():
        return None
    candidates, sizes = rows[usable], size[usable]
    distance = np.abs(sizes - (low + high) / 2)
    best = np.lexsort((sizes, distance))[0]  # by distance, then by |delta|
    return int(candidates[best])


def limit_price_cents(quote: OptionQuote, ticks: TickRule) -> int:
    """A sell limit: the mid rounded up onto the option grid, never below the bid."""
    twice_mid = quote.bid_cents + quote.ask_cents  # in half cents: exact
    small = ticks.option_small_tick_cents
    on_small = -(-twice_mid // (2 * small)) * small
    tick = ticks.option_tick_cents(quote.contract.underlying, on_small)
    price = -(-twice_mid // (2 * tick)) * tick
    return max(price, quote.bid_cents)


def deployable_cents(book: SleeveBook) -> int:
    """Free cash after the buffer, never negative: the buffer is never deployed."""
    return max(0, book.free_cash_cents - book.buffer_cents)


def _trade_capital_cents(book: SleeveBook, config: AllUseConfig) -> int:
    capital = Decimal(deployable_cents(book)) * config.allocation.trade_capital_pct
    return int(capital.to_integral_value(rounding=ROUND_FLOOR))


def _strategy(sleeve: SleeveKind, config: AllUseConfig) -> SleeveStrategy:
    if sleeve is SleeveKind.GEN:
        return config.gen
    if sleeve is SleeveKind.REV:
        return config.rev
    if sleeve is SleeveKind.COM:
        return config.com
    raise ValueError(f"{sleeve.label} has no entry rules: it trades only on STAR-LAB instructions")


def _call_rule(sleeve: SleeveKind, config: AllUseConfig) -> EntryRule:
    if sleeve is SleeveKind.GEN:
        return EntryRule.of(config.gen.covered_call, OptionRight.CALL)
    return EntryRule.of(_strategy(sleeve, config), OptionRight.CALL)


def _shares_per_contract(sleeve: SleeveKind, config: AllUseConfig) -> int:
    return config.com.round_lot if sleeve is SleeveKind.COM else OPTION_MULTIPLIER


def _uncovered_lots(book: SleeveBook, ticker: str, config: AllUseConfig) -> int:
    lots = book.shares.get(ticker, 0) // _shares_per_contract(book.sleeve, config)
    return lots - book.short_quantity(ticker, OptionRight.CALL)


def _holds_lots(book: SleeveBook, ticker: str, config: AllUseConfig) -> bool:
    return book.shares.get(ticker, 0) >= _shares_per_contract(book.sleeve, config)


def _tickers(strategy: SleeveStrategy, book: SleeveBook, config: AllUseConfig) -> list[str]:
    """The sleeve's tickers, then any other ticker it holds round lots of (for covered calls)."""
    held = sorted(t for t in book.shares if t not in strategy.tickers and _holds_lots(book, t, config))
    return [*strategy.tickers, *held]


def _idle_cash_high(book: SleeveBook, config: AllUseConfig) -> bool:
    return Decimal(deployable_cents(book)) > config.com.csp_idle_cash_trigger_pct * book.value_cents


def _put_capital(
    tickers: Iterable[str], book: SleeveBook, strategy: SleeveStrategy, config: AllUseConfig
) -> dict[str, int]:
    """Put capital per ticker still waiting for a put, split by (renormalised) ticker weight to the cent."""
    waiting = [
        t
        for t in tickers
        if t in strategy.tickers and not _holds_lots(book, t, config) and book.short_quantity(t, OptionRight.PUT) == 0
    ]
    weights = {t: strategy.weight_of(t) for t in waiting}
    if sum(weights.values(), Decimal(0)) <= 0:
        return dict.fromkeys(waiting, 0)
    return split_by_weights(_trade_capital_cents(book, config), weights, tuple(waiting))


# --------------------------------------------------------------------------------------------------
# One ticker
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    book: SleeveBook
    now: datetime
    delta_shift: Decimal
    config: AllUseConfig
    ticks: TickRule


def _floor_decision(premium_pct: Decimal, floor: Decimal, config: AllUseConfig) -> tuple[EntryDecision, str | None]:
    if premium_pct >= floor:
        return EntryDecision.PLACE, None
    policy = config.hitl.premium_floor_policy
    below = f"premium {premium_pct:.2%} of strike is below the floor {floor:.2%}"
    if policy == "skip":
        return EntryDecision.SKIP, f"{below}: not placed (policy skip)"
    if policy == "ask":
        return EntryDecision.AWAIT_HUMAN, f"{below}: awaiting a human decision (policy ask)"
    return EntryDecision.PLACE, f"{below}: placed anyway (policy place)"


def _plan_contract(
    ticker: str, chain: OptionChain | None, rule: EntryRule, ctx: _Context
) -> tuple[OptionQuote, tuple[Decimal, Decimal]] | TickerSkip:
    if chain is None:
        return TickerSkip(SkipCode.NO_CHAIN, f"no option chain for {ticker}")
    expiry = choose_expiry(chain, _ny(ctx.now).date(), rule.dte_min, rule.dte_max)
    if expiry is None:
        return TickerSkip(SkipCode.NO_EXPIRY, f"no {ticker} expiry with {rule.dte_min}-{rule.dte_max} DTE")
    band = shifted_band(rule.delta_band, ctx.delta_shift)
    row = choose_strike_row(chain, expiry, rule.right, band)
    if row is None:
        kind = "call" if rule.right is OptionRight.CALL else "put"
        return TickerSkip(
            SkipCode.NO_DELTA_IN_BAND, f"no {ticker} {expiry} {kind} with a bid and |delta| in {band[0]}-{band[1]}"
        )
    return chain.quote(row), band


def _entry_plan(
    quote: OptionQuote, quantity: int, rule: EntryRule, band: tuple[Decimal, Decimal], ctx: _Context, why: str
) -> EntryPlan:
    contract = quote.contract
    price = limit_price_cents(quote, ctx.ticks)
    premium_pct = Decimal(price) / Decimal(contract.strike_cents)
    decision, alert = _floor_decision(premium_pct, rule.premium_floor_pct, ctx.config)
    is_put = contract.right is OptionRight.PUT
    return EntryPlan(
        sleeve=ctx.book.sleeve,
        contract=contract,
        side=Side.SELL,
        quantity=quantity,
        limit_price_cents=price,
        premium_pct=premium_pct,
        delta=quote.delta,
        cash_required_cents=contract.strike_cents * OPTION_MULTIPLIER * quantity if is_put else 0,
        delta_band=band,
        decision=decision,
        below_floor=alert is not None,
        alert_reason=alert,
        alert_priority=FLOOR_ALERT_PRIORITY if alert is not None else None,
        reasons=(
            why,
            f"|delta| {abs(quote.delta):.2f} nearest the middle of band {band[0]}-{band[1]}"
            f" (week-mode shift {ctx.delta_shift})",
            f"limit {price}c: mid of {quote.bid_cents}c/{quote.ask_cents}c rounded up onto the tick grid",
        ),
    )


def _covered_call(ticker: str, chain: OptionChain | None, ctx: _Context) -> EntryPlan | TickerSkip:
    rule = _call_rule(ctx.book.sleeve, ctx.config)
    if not in_entry_window(rule, ctx.now):
        return TickerSkip(SkipCode.OUTSIDE_WINDOW, "outside the covered-call entry window")
    lots = _uncovered_lots(ctx.book, ticker, ctx.config)
    if lots <= 0:
        return TickerSkip(SkipCode.ALREADY_COVERED, f"every {ticker} round lot already has a short call")
    picked = _plan_contract(ticker, chain, rule, ctx)
    if isinstance(picked, TickerSkip):
        return picked
    quote, band = picked
    shares = ctx.book.shares.get(ticker, 0)
    return _entry_plan(quote, lots, rule, band, ctx, f"covered calls: {shares} shares held, {lots} lots uncovered")


def _cash_secured_put(ticker: str, chain: OptionChain | None, capital: int, ctx: _Context) -> EntryPlan | TickerSkip:
    rule = EntryRule.of(_strategy(ctx.book.sleeve, ctx.config), OptionRight.PUT)
    if not in_entry_window(rule, ctx.now):
        return TickerSkip(SkipCode.OUTSIDE_WINDOW, "outside the put entry window")
    picked = _plan_contract(ticker, chain, rule, ctx)
    if isinstance(picked, TickerSkip):
        return picked
    quote, band = picked
    per_contract = quote.contract.strike_cents * OPTION_MULTIPLIER
    quantity = capital // per_contract
    if quantity == 0:
        return TickerSkip(
            SkipCode.SIZE_ZERO, f"{ticker} capital {capital}c does not secure one contract ({per_contract}c)"
        )
    why = f"cash-secured puts: {capital}c of put capital, {per_contract}c per contract"
    return _entry_plan(quote, quantity, rule, band, ctx, why)


def _plan_ticker(
    ticker: str, chain: OptionChain | None, capital: Mapping[str, int], ctx: _Context
) -> EntryPlan | TickerSkip:
    covered_call = _holds_lots(ctx.book, ticker, ctx.config)
    right = OptionRight.CALL if covered_call else OptionRight.PUT
    if (ticker, right) in ctx.book.entered:  # one entry per ticker and right a week
        return TickerSkip(SkipCode.ENTERED, f"{ticker}: this week's {right.name.lower()} entry was placed")
    if covered_call:
        return _covered_call(ticker, chain, ctx)
    if ctx.book.short_quantity(ticker, OptionRight.PUT) > 0:
        return TickerSkip(SkipCode.PUT_ALREADY_OPEN, f"{ticker} already has an open short put")
    if ctx.book.sleeve is SleeveKind.COM and not _idle_cash_high(ctx.book, ctx.config):
        trigger = ctx.config.com.csp_idle_cash_trigger_pct
        return TickerSkip(SkipCode.IDLE_CASH_BELOW_TRIGGER, f"idle cash is not above {trigger:.0%} of the sleeve")
    return _cash_secured_put(ticker, chain, capital.get(ticker, 0), ctx)


# --------------------------------------------------------------------------------------------------
# The sleeve
# --------------------------------------------------------------------------------------------------


def plan_entries(
    sleeve: SleeveKind,
    book: SleeveBook,
    chains: Mapping[str, OptionChain],
    now: datetime,
    delta_shift: Decimal,
    config: AllUseConfig,
) -> SleevePlan:
    """The sleeve's entries for this moment: one plan per ticker, or the reason it got none.

    `delta_shift` is the week mode's shift (Green/Red/Chop); it moves the delta band, never the size.
    """
    if book.sleeve is not sleeve:
        raise ValueError(f"book of {book.sleeve.label} given to plan {sleeve.label}")
    strategy = _strategy(sleeve, config)
    _ny(now)  # refuse a naive clock even when the sleeve is paused
    tickers = _tickers(strategy, book, config)
    if book.paused:
        paused = TickerSkip(SkipCode.PAUSED, f"{sleeve.label} paused until next week (ATR L3)")
        return SleevePlan([], dict.fromkeys(tickers, paused))
    ctx = _Context(book, now, delta_shift, config, config.ticks)
    capital = _put_capital(tickers, book, strategy, config)
    plans: list[EntryPlan] = []
    skipped: dict[str, TickerSkip] = {}
    for ticker in tickers:
        outcome = _plan_ticker(ticker, chains.get(ticker), capital, ctx)
        if isinstance(outcome, TickerSkip):
            skipped[ticker] = outcome
        else:
            plans.append(outcome)
    return SleevePlan(plans, skipped)
