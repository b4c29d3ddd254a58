"""Market data as the protocol sees it: bars of the underlyings and option chains.

Bars and greeks are measurements, held as numpy arrays (float64) for vectorised work. Option
quotes that can become ledger prices (bid, ask) are integer cents on the tick grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from alluse.domain.instruments import OptionContract, OptionRight

NEW_YORK = ZoneInfo("America/New_York")  # the exchange's time zone: sessions, bars and expiries

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DateArray = npt.NDArray[np.datetime64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class DailyBars:
    """One row per session, oldest first; `dates` are session dates (datetime64[D])."""

    ticker: str
    dates: DateArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: IntArray

    def __len__(self) -> int:
        return int(self.dates.shape[0])

    def through(self, session: date) -> DailyBars:
        """The bars up to and including `session` (no look-ahead)."""
        end = int(np.searchsorted(self.dates, np.datetime64(session, "D"), side="right"))
        return DailyBars(
            self.ticker,
            self.dates[:end],
            self.open[:end],
            self.high[:end],
            self.low[:end],
            self.close[:end],
            self.volume[:end],
        )


@dataclass(frozen=True)
class IntradayBars:
    """Bars of one session, oldest first; `times` are America/New_York wall-clock (datetime64[m])."""

    ticker: str
    session: date
    times: DateArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: IntArray

    def __len__(self) -> int:
        return int(self.times.shape[0])


@dataclass(frozen=True)
class OptionQuote:
    contract: OptionContract
    bid_cents: int
    ask_cents: int
    iv: float
    delta: float
    gamma: float
    theta: float  # per calendar day, per share
    vega: float  # per 1.00 of volatility, per share
    open_interest: int
    volume: int
    underlying_price: float

    @property
    def mid(self) -> Decimal:
        """Mid price in dollars per share (may be a half cent)."""
        return Decimal(self.bid_cents + self.ask_cents) / 200

    @property
    def spread_cents(self) -> int:
        return self.ask_cents - self.bid_cents


_EPOCH = date(1970, 1, 1)


def _contract_key(day: Any, strike_cents: Any, is_call: Any) -> Any:
    """One integer per (expiry day, strike, right), for scalars and arrays alike."""
    return (day * (1 << 36) + strike_cents) * 2 + is_call


@dataclass(frozen=True)
class OptionChain:
    """Every listed contract of one underlying at one instant, column-wise (one row per contract)."""

    underlying: str
    as_of: datetime
    spot: float
    expiry: DateArray  # datetime64[D]
    strike_cents: IntArray
    is_call: BoolArray
    bid_cents: IntArray
    ask_cents: IntArray
    iv: FloatArray
    delta: FloatArray
    gamma: FloatArray
    theta: FloatArray
    vega: FloatArray
    open_interest: IntArray
    volume: IntArray

    def __len__(self) -> int:
        return int(self.strike_cents.shape[0])

    def expiries(self) -> list[date]:
        return list(self._expiries)

    @cached_property
    def _expiries(self) -> tuple[date, ...]:
        return tuple(d.astype(date) for d in np.unique(self.expiry))

    def rows(self, expiry: date, right: OptionRight) -> npt.NDArray[np.intp]:
        """Row indices of one expiry and right, by increasing strike."""
        mask = (self.expiry == np.datetime64(expiry, "D")) & (self.is_call == (right is OptionRight.CALL))
        idx = np.flatnonzero(mask)
        return idx[np.argsort(self.strike_cents[idx], kind="stable")]

    def contract(self, row: int) -> OptionContract:
        right = OptionRight.CALL if bool(self.is_call[row]) else OptionRight.PUT
        return OptionContract(self.underlying, self.expiry[row].astype(date), int(self.strike_cents[row]), right)

    def quote(self, row: int) -> OptionQuote:
        return OptionQuote(
            contract=self.contract(row),
            bid_cents=int(self.bid_cents[row]),
            ask_cents=int(self.ask_cents[row]),
            iv=float(self.iv[row]),
            delta=float(self.delta[row]),
            gamma=float(self.gamma[row]),
            theta=float(self.theta[row]),
            vega=float(self.vega[row]),
            open_interest=int(self.open_interest[row]),
            volume=int(self.volume[row]),
            underlying_price=self.spot,
        )

    def find(self, contract: OptionContract) -> OptionQuote | None:
        """The quote of a listed contract, or None if it is not listed."""
        row = self.row_of(contract)
        return None if row is None else self.quote(row)

    def row_of(self, contract: OptionContract) -> int | None:
        """The row of a listed contract, or None if it is not listed."""
        if contract.underlying != self.underlying:
            return None
        keys, rows = self._contract_index
        key = _contract_key((contract.expiry - _EPOCH).days, contract.strike_cents, contract.right is OptionRight.CALL)
        at = int(np.searchsorted(keys, key))
        return int(rows[at]) if at < keys.shape[0] and keys[at] == key else None

    @cached_property
    def _contract_index(self) -> tuple[IntArray, npt.NDArray[np.intp]]:
        """Sorted contract keys and their rows, built once per chain: a fleet looks up many contracts in
        one shared chain. A stable sort keeps the first listing of a duplicate first."""
        days = self.expiry.astype("datetime64[D]").astype(np.int64)
        keys = _contract_key(days, self.strike_cents.astype(np.int64), self.is_call)
        order = np.argsort(keys, kind="stable")
        return keys[order], order
