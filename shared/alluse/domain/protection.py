"""The protocol's memory of an account between scans and the rules that move it (A5, A6).

An account's `ProtocolState` (on the account record) holds, per short option of a protocol sleeve, the
underlying's price at entry and the ATR level last seen (`Watch`); the sleeves an L3 paused; the latest
closed trades' P&L; the day's starting equity; and when a breaker's SAFE lifts. The trading step feeds
these functions with prices, ATRs and equity (adapters' business) and acts on what they return.

Decisions (the spec leaves them open):

- Only the protocol's sleeves (Gen, Rev, Com) are watched: STAR-LAB directs its own exits, and the risk
  engine still has the last word on them.
- A short option first seen without a recorded entry is watched from its underlying's price at the fill
  (the caller's figure); after a restart with no record, from the price when it is first seen again.
- A closed trade is a position closed to flat by buy-backs, expiries or call-aways, with the P&L of
  all the bookings that closed it (fills in parts are one trade). A put assignment is not one: by
  A12 it realises nothing and the trade goes on as shares.
- The breakers keep only as many trade results as the consecutive-loss rule reads.
- SAFE from a breaker lifts by `circuit_breakers.safe_release`: an operator (default), or the protocol
  at the next session or the next week.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, timedelta
from enum import StrEnum

from alluse.domain.accounts import Account, AccountStatus, ProtocolState, SleeveBalance, Watch, change_status
from alluse.domain.atr_protocol import AtrLevel, LevelChange, ProtectedPosition, sleeve_pauses
from alluse.domain.config import AllUseConfig, CircuitBreakersConfig
from alluse.domain.errors import MarketDataGap
from alluse.domain.instruments import Instrument, OptionContract
from alluse.domain.risk import BreakerInputs, BreakerTrip, evaluate_breakers
from alluse.domain.sleeves import SleeveKind

PROTECTED_SLEEVES = (SleeveKind.GEN, SleeveKind.REV, SleeveKind.COM)


class ProtectivePurpose(StrEnum):
    """The purpose part of a protective order's intent id (four characters, see orders.intent_id)."""

    CLOSE = "STOP"  # buy back a short option (L2 without a roll, L3)
    ROLL_CLOSE = "RLCL"  # a roll's buy-back leg
    ROLL_OPEN = "RLOP"  # a roll's new short leg
    LIQUIDATE = "LIQD"  # everything sold before a merge (A10)


# Orders that take risk off: never given up (a timed-out one is chased) and never written behind.
EXIT_PURPOSES = frozenset({ProtectivePurpose.CLOSE, ProtectivePurpose.ROLL_CLOSE, ProtectivePurpose.LIQUIDATE})


def watch_key(sleeve: SleeveKind, instrument: Instrument) -> str:
    """A position's key in the protocol's memory: its sleeve and symbol."""
    return f"{sleeve.value}:{instrument.symbol}"


def short_options(account: Account) -> list[tuple[SleeveKind, OptionContract, int]]:
    """(sleeve, contract, signed quantity) of every short option in the protocol's sleeves."""
    return [
        (kind, instrument, quantity)
        for kind in PROTECTED_SLEEVES
        if kind in account.sleeves
        for instrument, quantity in account.sleeve(kind).positions.items()
        if isinstance(instrument, OptionContract) and quantity < 0
    ]


def unwatched_underlyings(account: Account) -> set[str]:
    """Underlyings of short options that have no watch yet: the caller prices them for `sync_watches`."""
    watches = account.protocol.watches
    return {c.underlying for s, c, _ in short_options(account) if watch_key(s, c) not in watches}


def sync_watches(account: Account, entry_prices_cents: Mapping[str, int]) -> Account:
    """Watches follow the short options: a new one is watched from its underlying's entry price, a
    position that is gone is no longer watched."""
    current = {watch_key(s, c): c for s, c, _ in short_options(account)}
    watches = {k: w for k, w in account.protocol.watches.items() if k in current}
    for key, contract in current.items():
        if key in watches:
            continue
        price = entry_prices_cents.get(contract.underlying)
        if price is None or price <= 0:
            raise MarketDataGap(f"no entry price for {contract.underlying}", field="entry_prices_cents")
        watches[key] = Watch(price)
    if watches == dict(account.protocol.watches):
        return account
    return _with_state(account, watches=watches)


def protected_positions(account: Account) -> list[ProtectedPosition]:
    """The watched short options as the ATR protocol measures them (call `sync_watches` first)."""
    positions = []
    for sleeve, contract, quantity in short_options(account):
        key = watch_key(sleeve, contract)
        watch = account.protocol.watches.get(key)
        if watch is None:
            continue
        credit = -account.sleeve(sleeve).costs.get(contract, 0)  # a short's cost is the premium taken in
        positions.append(
            ProtectedPosition(
                position_id=key,
                account_id=account.account_id,
                sleeve=sleeve,
                contract=contract,
                quantity=quantity,
                entry_underlying_price=watch.entry_underlying_cents / 100,
                credit_received_cents=max(credit, 0),
                level=AtrLevel(watch.level),
            )
        )
    return positions


def apply_level_changes(account: Account, changes: Sequence[LevelChange], config: AllUseConfig) -> Account:
    """Remember each position's new level; an L3 pauses its sleeve until next week (A5)."""
    if not changes:
        return account
    watches = dict(account.protocol.watches)
    for change in changes:
        watch = watches.get(change.position_id)
        if watch is not None:
            watches[change.position_id] = replace(watch, level=int(change.to_level))
    paused = dict(account.protocol.paused_until)
    for pause in sleeve_pauses(changes, config.atr_protocol):
        paused[pause.sleeve] = max(pause.until, paused.get(pause.sleeve, pause.until))
    return _with_state(account, watches=watches, paused_until=paused)


def sleeve_paused(account: Account, sleeve: SleeveKind, on: date) -> bool:
    until = account.protocol.paused_until.get(sleeve)
    return until is not None and on < until


# --- circuit breakers (A6) ------------------------------------------------------------------------


def closed_trade_pnl(before: SleeveBalance, after: SleeveBalance, instrument: Instrument) -> int | None:
    """The realised P&L of a booking that shrank `instrument`'s position, or None if it closed nothing.
    A put assignment is no closed trade (A12: it realises nothing, the trade goes on as shares): the
    caller does not pass one."""
    held, left = before.quantity(instrument), after.quantity(instrument)
    if held == 0 or abs(left) >= abs(held) or (left != 0 and (left > 0) != (held > 0)):
        return None
    return after.realized_cents - before.realized_cents


def record_closings(
    account: Account, closings: Iterable[tuple[str, int, bool]], breakers: CircuitBreakersConfig
) -> tuple[Account, list[int]]:
    """Bookings that shrank a position: (watch_key, realised P&L, position now flat). A trade ends when
    its position is flat, with the P&L of all its closing bookings (a buy-back filled in parts is one
    trade, A6); the ended trades' P&L, oldest first, and the account remembering them."""
    closings = list(closings)
    if not closings:
        return account, []
    pending = dict(account.protocol.closing_pnls_cents)
    ended = []
    for key, pnl, flat in closings:
        total = pending.pop(key, 0) + pnl
        if flat:
            ended.append(total)
        else:
            pending[key] = total
    kept = (*account.protocol.trade_pnls_cents, *ended)[-breakers.consecutive_losses :]
    return _with_state(account, trade_pnls_cents=kept, closing_pnls_cents=pending), ended


def start_day(account: Account, day: date, equity_cents: int) -> Account:
    """The day's first scan: the equity the daily drawdown is measured from."""
    return _with_state(account, day=day, day_start_equity_cents=equity_cents)


def breaker_trip(account: Account, equity_now_cents: int, breakers: CircuitBreakersConfig) -> BreakerTrip | None:
    """The first breaker this account trips now (A6), or None; without a day start, no drawdown is read."""
    state = account.protocol
    inputs = BreakerInputs(
        closed_trade_pnls_cents=state.trade_pnls_cents,
        start_of_day_equity_cents=state.day_start_equity_cents or 0,
        equity_now_cents=equity_now_cents,
        open_position_atr_levels=[w.level for w in state.watches.values()],
    )
    return evaluate_breakers(inputs, breakers)


def go_safe(account: Account, on: date, breakers: CircuitBreakersConfig) -> Account:
    """SAFE (no new risk, exits allowed) with the release day the policy gives (None: an operator's)."""
    release = breakers.safe_release
    until = None
    if release == "next_session":
        until = on + timedelta(days=1)  # steps run on sessions only: the first step on a later day
    elif release == "next_week":
        until = on + timedelta(days=7 - on.weekday())
    # The losses that tripped it are spent: the streak starts again when trading resumes.
    return _with_state(change_status(account, AccountStatus.SAFE), safe_until=until, trade_pnls_cents=())


def safe_release_due(account: Account, on: date) -> bool:
    until = account.protocol.safe_until
    return account.status is AccountStatus.SAFE and until is not None and on >= until


def release_safe(account: Account) -> Account:
    return _with_state(change_status(account, AccountStatus.ACTIVE), safe_until=None)


def _with_state(account: Account, **changes: object) -> Account:
    state: ProtocolState = replace(account.protocol, **changes)  # type: ignore[arg-type]
    return replace(account, protocol=state)
