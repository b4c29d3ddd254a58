"""Price grids: the minimum price increment of options and equities (exchange rules, configurable)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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

    def option_tick_cents(self, underlying: str, price_cents: int) -> int:
        if underlying in self.penny_everywhere or price_cents < self.option_threshold_cents:
            return self.option_small_tick_cents
        return self.option_large_tick_cents

    def round_option(self, underlying: str, price_cents: float, *, up: bool) -> int:
        """Nearest grid price at or above (`up`) / at or below the given price."""
        tick = self.option_tick_cents(underlying, int(price_cents))
        steps = price_cents / tick
        whole = int(-(-steps // 1)) if up else int(steps // 1)
        return max(whole * tick, 0)
