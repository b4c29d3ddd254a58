"""Implied-volatility surface of the simulated market, tied to the underlying's realised volatility.

The surface is a function of time to expiry ``T`` (years) and log-moneyness ``m = ln(K / F)`` against
the forward ``F = S e^{(r − q) T}``:

- ATM level (term structure): the short-dated level is ``iv_premium × realised_vol`` and the long-run
  level ``iv_premium × long_run_vol``; the ATM variance is the average over ``[0, T]`` of a variance
  that reverts from the short to the long level with time constant ``tau`` (as in Heston):
  ``atm(T)² = long² + (short² − long²) × (1 − e^{−T/τ}) / (T/τ)``. So 0-DTE options trade at the
  short level, LEAPS near the long-run level, and the curve is monotone in between.
- Skew and smile, in ``x = m / √T`` units (log-moneyness per √year, so one set of coefficients fits
  every expiry): ``iv = atm·(1 + curvature·x²) − skew·x`` with ``skew = put_skew`` below the forward
  (x < 0: IV rises as the strike falls) and ``call_skew`` above it; ``put_skew > call_skew`` makes the
  put side steeper. The skew is absolute (vol per unit of x), the smile relative to the ATM level.
  ``curvature·wing_x_max² < 1`` keeps deltas monotone in strike: d1 = −x/iv + iv·√T/2, and
  ∂(x/iv)/∂x = atm·(1 − curvature·x²)/iv² > 0 whatever the skew. Beyond ``|x| = wing_x_max`` the
  wings are flat (without it a 0-DTE option 10 % out of the money, at |x| ≈ 4, would get an absurd IV).
- Clipped to ``[iv_floor, iv_cap]``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["VolSurfaceSettings", "atm_vol", "iv_surface"]

FloatArray = npt.NDArray[np.float64]

_MIN_T = 1e-6  # years (~32 s): the surface at T = 0 is read at this time


class VolSurfaceSettings(BaseModel):
    """Parameters of the simulated implied-volatility surface (and the rate used to price on it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    risk_free_rate: float = Field(
        default=0.04, ge=-0.05, le=0.25, description="Continuously compounded risk-free rate (0.04 = 4 %)."
    )
    iv_premium: float = Field(
        default=1.10,
        gt=0,
        le=5,
        description="Implied over realised volatility (variance risk premium): IV = this × realised vol.",
    )
    tau_years: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="Time constant (years) with which short-dated IV reverts to the long-run level.",
    )
    put_skew: float = Field(
        default=0.20,
        ge=0,
        le=5,
        description="IV added per unit of −ln(K/F)/√T below the forward (put side; vol points / 100).",
    )
    call_skew: float = Field(
        default=0.08,
        ge=-5,
        le=5,
        description="IV removed per unit of ln(K/F)/√T above the forward (call side); < put_skew = put side steeper.",
    )
    curvature: float = Field(
        default=0.10, ge=0, le=5, description="Smile: the ATM level is multiplied by (1 + this × (ln(K/F)/√T)²)."
    )
    wing_x_max: float = Field(
        default=2.5,
        gt=0,
        le=100,
        description="Skew and smile stop growing beyond |ln(K/F)/√T| = this (flat far wings, e.g. 0-DTE).",
    )
    iv_floor: float = Field(default=0.05, gt=0, le=1, description="Lowest implied volatility on the surface.")
    iv_cap: float = Field(default=3.0, gt=0, le=5, description="Highest implied volatility on the surface.")

    @model_validator(mode="after")
    def _floor_below_cap(self) -> VolSurfaceSettings:
        if self.iv_floor >= self.iv_cap:
            raise ValueError(f"iv_floor {self.iv_floor} must be below iv_cap {self.iv_cap}")
        if self.curvature * self.wing_x_max**2 >= 1:
            raise ValueError(
                f"curvature × wing_x_max² must be below 1 (got {self.curvature * self.wing_x_max**2:.3g}):"
                " a steeper smile would make deltas non-monotone in strike"
            )
        return self


def atm_vol(
    realised_vol: npt.ArrayLike, long_run_vol: npt.ArrayLike, t_years: npt.ArrayLike, settings: VolSurfaceSettings
) -> FloatArray:
    """At-the-forward implied volatility for expiry ``t_years`` (term structure only, before the floor/cap)."""
    short = settings.iv_premium * np.asarray(realised_vol, dtype=np.float64)
    long = settings.iv_premium * np.asarray(long_run_vol, dtype=np.float64)
    u = np.maximum(np.asarray(t_years, dtype=np.float64), _MIN_T) / settings.tau_years
    weight = -np.expm1(-u) / u  # (1 − e^{−u}) / u: 1 at T = 0, → 0 as T → ∞
    return np.asarray(np.sqrt(long * long + (short * short - long * long) * weight), dtype=np.float64)


def iv_surface(
    realised_vol: npt.ArrayLike,
    long_run_vol: npt.ArrayLike,
    log_moneyness: npt.ArrayLike,
    t_years: npt.ArrayLike,
    settings: VolSurfaceSettings,
) -> FloatArray:
    """Implied volatility at ``log_moneyness = ln(K / F)`` and ``t_years``; arguments broadcast."""
    t = np.maximum(np.asarray(t_years, dtype=np.float64), _MIN_T)
    x = np.clip(np.asarray(log_moneyness, dtype=np.float64) / np.sqrt(t), -settings.wing_x_max, settings.wing_x_max)
    slope = np.where(x < 0.0, settings.put_skew, settings.call_skew)
    iv = atm_vol(realised_vol, long_run_vol, t, settings) * (1.0 + settings.curvature * x * x) - slope * x
    return np.asarray(np.clip(iv, settings.iv_floor, settings.iv_cap), dtype=np.float64)
