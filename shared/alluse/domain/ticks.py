"""Price grids: the minimum price increment of options and equities (exchange rules, configurable)."""

from __future__ import annotations

import re
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class TickRule(BaseModel):
    """US listed options: $0.01 below $3.00 and $0.05 from $3.00 up, except names quoted in pennies
    throughout (SPY, QQQ, IWM); equities $0.01."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    option_small_tick_cents: int = Field(default=1, ge=1, le=100, description="Option tick below the threshold.")
    option_large_tick_cents: int = Field(default=5, ge=1, le=100, description="Option tick at/above the threshold.")
    option_threshold_cents: int = Field(default=300, ge=1, description="Premium at which the larger tick starts.")
    penny_everywhere: frozenset[str] = Field(
        default=frozenset({"SPY", "QQQ", "IWM"}), description="Underlyings whose options trade in pennies at any price."
    )
    equity_tick_cents: int = Field(default=1, ge=1, le=100, description="Equity tick.")

    @field_validator("penny_everywhere")
    @classmethod
    def _tickers(cls, value: frozenset[str]) -> frozenset[str]:
        bad = sorted(t for t in value if not re.fullmatch(r"[A-Z][A-Z./]{0,5}", t))
        if bad:
            raise ValueError(f"not tickers (upper-case, 1-6 characters): {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _grid(self) -> Self:
        small, large = self.option_small_tick_cents, self.option_large_tick_cents
        if large % small or self.option_threshold_cents % large:
            raise ValueError("the large tick must be a multiple of the small one and divide the threshold")
        return self

    def option_tick_cents(self, underlying: str, price_cents: int) -> int:
        return int(self.option_ticks_cents(underlying, np.asarray([price_cents]))[0])

    def option_ticks_cents(self, underlying: str, price_cents: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """The tick at each price (vectorised, for whole chains)."""
        large = self.option_small_tick_cents if underlying in self.penny_everywhere else self.option_large_tick_cents
        ticks = np.where(price_cents >= self.option_threshold_cents, large, self.option_small_tick_cents)
        return np.asarray(ticks, dtype=np.int64)

    def round_options(self, underlying: str, price_cents: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Each price rounded to the nearest point of the option grid, in integer cents."""
        on_small = np.rint(price_cents / self.option_small_tick_cents) * self.option_small_tick_cents
        ticks = self.option_ticks_cents(underlying, on_small)
        return np.asarray(np.rint(price_cents / ticks) * ticks, dtype=np.int64)
