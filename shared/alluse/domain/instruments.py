"""What can be traded: equities and listed options (contract identity is exact: strikes in cents)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from functools import cached_property

from alluse.domain.errors import ValidationFailed

OPTION_MULTIPLIER = 100  # US equity options: one contract = 100 shares

_OCC = re.compile(r"(?P<root>[A-Z.]{1,6}) *(?P<ymd>\d{6})(?P<right>[CP])(?P<strike>\d{8})")


class OptionRight(StrEnum):
    PUT = "P"
    CALL = "C"


@dataclass(frozen=True, order=True)
class Equity:
    ticker: str

    @property
    def symbol(self) -> str:
        return self.ticker

    @property
    def multiplier(self) -> int:
        return 1


@dataclass(frozen=True, order=True)
class OptionContract:
    underlying: str
    expiry: date
    strike_cents: int
    right: OptionRight

    def __post_init__(self) -> None:
        if self.strike_cents <= 0:
            raise ValidationFailed(f"strike must be positive (got {self.strike_cents} cents)", field="strike")

    def __hash__(self) -> int:  # explicit, so dataclass keeps it: hashed once per contract object
        return self._hash

    @cached_property  # a contract is a key of every memo of marks, positions and watches
    def _hash(self) -> int:
        return hash((self.underlying, self.expiry, self.strike_cents, self.right))

    def __getstate__(self) -> dict[str, object]:
        # Never pickled: a string's hash differs between processes (a worker's contracts reach the runner).
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    @property
    def multiplier(self) -> int:
        return OPTION_MULTIPLIER

    @cached_property  # read on every scan of every position: formatted once per contract object
    def symbol(self) -> str:
        """OCC symbology: root padded to 6, yymmdd, C/P, strike in thousandths of a dollar (8 digits)."""
        return f"{self.underlying:<6}{self.expiry:%y%m%d}{self.right.value}{self.strike_cents * 10:08d}"

    @classmethod
    def from_symbol(cls, symbol: str) -> OptionContract:
        match = _OCC.fullmatch(symbol.strip().upper())
        if match is None or int(match["strike"]) % 10:
            raise ValidationFailed(
                f"'{symbol}' is not an OCC option symbol (e.g. 'TSLA  261127P00250000')", field="symbol"
            )
        expiry = datetime.strptime(match["ymd"], "%y%m%d").date()
        return cls(match["root"], expiry, int(match["strike"]) // 10, OptionRight(match["right"]))

    def intrinsic_cents(self, underlying_cents: int) -> int:
        """Exercise value per share, in cents (never negative)."""
        if self.right is OptionRight.CALL:
            return max(0, underlying_cents - self.strike_cents)
        return max(0, self.strike_cents - underlying_cents)

    def dte(self, on: date) -> int:
        return (self.expiry - on).days


Instrument = Equity | OptionContract


def instrument_from_symbol(symbol: str) -> Instrument:
    """An OCC option symbol, or else an equity ticker (how positions are keyed when stored)."""
    return OptionContract.from_symbol(symbol) if _OCC.fullmatch(symbol.strip().upper()) else Equity(symbol)
