"""Black–Scholes–Merton pricing of European options, vectorised over numpy arrays.

Every function broadcasts its arguments against each other (scalars or arrays of any compatible
shape) and returns float64 arrays of the broadcast shape. Conventions:

- ``t_years``: time to expiry in years (calendar time, days / 365); ``t <= 0`` means expired;
- ``vol``, ``rate``, ``div_yield``: annualised, continuously compounded (0.25 = 25 %);
- ``is_call``: bool (True = call, False = put);
- greeks are per share: delta, gamma per $1 of spot, theta per calendar day (yearly theta / 365),
  vega per 1.00 of volatility (divide by 100 for "per vol point"), rho per 1.00 of rate.

Degenerate inputs never give NaN, inf or numpy warnings: when ``vol * sqrt(t)`` is (numerically)
zero, an option is worth its discounted forward intrinsic value ``max(±(S e^{-qT} − K e^{-rT}), 0)``
(plain intrinsic at ``t = 0``), its delta is ``±e^{-qT}`` in the money, 0 out of the money and half
that exactly at the forward, gamma and theta's volatility term are 0, and at ``t = 0`` theta, vega
and rho are 0.

These floats are measurements (model values), never ledger money: ledger prices are integer cents.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

__all__ = [
    "IV_MAX",
    "IV_MIN",
    "Greeks",
    "bs_greeks",
    "bs_price",
    "bs_price_greeks",
    "implied_vol",
]

FloatArray = npt.NDArray[np.float64]

_DAYS_PER_YEAR = 365.0
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_SD_EPS = 1e-12  # total standard deviation below which an option is priced at its (forward) intrinsic value

IV_MIN = 1e-6
"""Lowest volatility implied_vol searches (a price at or below this volatility's value maps to IV_MIN)."""
IV_MAX = 5.0
"""Highest volatility implied_vol searches (500 %): prices above this volatility's value give NaN."""


class Greeks(NamedTuple):
    """Sensitivities per share, as float64 arrays of the broadcast shape."""

    delta: FloatArray
    gamma: FloatArray
    theta: FloatArray  # per calendar day
    vega: FloatArray  # per 1.00 of volatility
    rho: FloatArray  # per 1.00 of rate


class _Core(NamedTuple):
    spot: FloatArray
    strike: FloatArray
    t: FloatArray  # clipped at 0
    vol: FloatArray
    rate: FloatArray
    div_yield: FloatArray
    sign: FloatArray  # +1 call, −1 put
    sd: FloatArray  # vol * sqrt(t)
    live: npt.NDArray[np.bool_]  # sd large enough for the lognormal formulas
    d1: FloatArray
    d2: FloatArray
    df_r: FloatArray  # e^{-rT}
    df_q: FloatArray  # e^{-qT}


def _core(
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t_years: npt.ArrayLike,
    vol: npt.ArrayLike,
    rate: npt.ArrayLike,
    div_yield: npt.ArrayLike,
    is_call: npt.ArrayLike,
) -> _Core:
    s, k, t, v, r, q, c = np.broadcast_arrays(
        np.asarray(spot, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(t_years, dtype=np.float64),
        np.asarray(vol, dtype=np.float64),
        np.asarray(rate, dtype=np.float64),
        np.asarray(div_yield, dtype=np.float64),
        np.asarray(is_call, dtype=np.bool_),
    )
    t = np.maximum(t, 0.0)
    v = np.maximum(v, 0.0)
    sign = np.where(c, 1.0, -1.0)
    sd = v * np.sqrt(t)
    live = sd > _SD_EPS
    safe_sd = np.where(live, sd, 1.0)
    df_r = np.exp(-r * t)
    df_q = np.exp(-q * t)
    log_fk = np.log(s / k) + (r - q) * t  # ln(F / K)
    d1 = log_fk / safe_sd + 0.5 * sd
    d2 = d1 - sd
    if not live.all():
        # Zero variance: the option ends at its forward intrinsic value with certainty.
        limit = np.where(log_fk > 0.0, np.inf, np.where(log_fk < 0.0, -np.inf, 0.0))
        d1 = np.where(live, d1, limit)
        d2 = np.where(live, d2, limit)
    return _Core(s, k, t, v, r, q, sign, sd, live, d1, d2, df_r, df_q)


def _price(c: _Core, nd1: FloatArray, nd2: FloatArray) -> FloatArray:
    value = c.sign * (c.spot * c.df_q * nd1 - c.strike * c.df_r * nd2)
    return np.asarray(np.maximum(value, 0.0), dtype=np.float64)


def _greeks(c: _Core, nd1: FloatArray, nd2: FloatArray) -> Greeks:
    pdf = np.exp(-0.5 * c.d1 * c.d1) * _INV_SQRT_2PI  # exp(-inf) = 0: no warning
    s_dq = c.spot * c.df_q
    delta = c.sign * c.df_q * nd1
    gamma = np.where(c.live, c.df_q * pdf / (c.spot * np.where(c.live, c.sd, 1.0)), 0.0)
    vega = s_dq * pdf * np.sqrt(c.t)
    # ∂V/∂t (per year) = −S e^{-qT} φ(d1) σ / (2√T) − w r K e^{-rT} N(w d2) + w q S e^{-qT} N(w d1)
    decay = np.where(c.live, s_dq * pdf * c.sd / (2.0 * np.where(c.live, c.t, 1.0)), 0.0)
    theta_year = -decay - c.sign * c.rate * c.strike * c.df_r * nd2 + c.sign * c.div_yield * s_dq * nd1
    theta_year = np.where(c.t > 0.0, theta_year, 0.0)  # expired: nothing left to decay
    rho = c.sign * c.strike * c.t * c.df_r * nd2
    return Greeks(
        delta=np.asarray(delta, dtype=np.float64),
        gamma=np.asarray(gamma, dtype=np.float64),
        theta=np.asarray(theta_year / _DAYS_PER_YEAR, dtype=np.float64),
        vega=np.asarray(vega, dtype=np.float64),
        rho=np.asarray(rho, dtype=np.float64),
    )


def _cdfs(c: _Core) -> tuple[FloatArray, FloatArray]:
    return np.asarray(ndtr(c.sign * c.d1), dtype=np.float64), np.asarray(ndtr(c.sign * c.d2), dtype=np.float64)


def bs_price(
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t_years: npt.ArrayLike,
    vol: npt.ArrayLike,
    rate: npt.ArrayLike,
    div_yield: npt.ArrayLike,
    is_call: npt.ArrayLike,
) -> FloatArray:
    """Black–Scholes–Merton value per share of a European call or put."""
    c = _core(spot, strike, t_years, vol, rate, div_yield, is_call)
    return _price(c, *_cdfs(c))


def bs_greeks(
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t_years: npt.ArrayLike,
    vol: npt.ArrayLike,
    rate: npt.ArrayLike,
    div_yield: npt.ArrayLike,
    is_call: npt.ArrayLike,
) -> Greeks:
    """Delta, gamma, theta (per calendar day), vega (per 1.00 of vol) and rho (per 1.00 of rate), per share."""
    c = _core(spot, strike, t_years, vol, rate, div_yield, is_call)
    return _greeks(c, *_cdfs(c))


def bs_price_greeks(
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t_years: npt.ArrayLike,
    vol: npt.ArrayLike,
    rate: npt.ArrayLike,
    div_yield: npt.ArrayLike,
    is_call: npt.ArrayLike,
) -> tuple[FloatArray, Greeks]:
    """Price and greeks in one pass (d1, d2 and the normal CDFs computed once)."""
    c = _core(spot, strike, t_years, vol, rate, div_yield, is_call)
    nd1, nd2 = _cdfs(c)
    return _price(c, nd1, nd2), _greeks(c, nd1, nd2)


def implied_vol(
    price: npt.ArrayLike,
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t_years: npt.ArrayLike,
    rate: npt.ArrayLike,
    div_yield: npt.ArrayLike,
    is_call: npt.ArrayLike,
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
) -> FloatArray:
    """Black–Scholes–Merton implied volatility, element-wise, vectorised.

    Method: safeguarded Newton in volatility. Each element keeps a bracket [lo, hi] (the price is
    increasing in volatility, starting from [IV_MIN, IV_MAX]) that every evaluation shrinks; a Newton
    step that leaves the bracket, or a vanishing vega, is replaced by bisection. Only unconverged
    elements are re-evaluated.

    Accuracy: iterates until the price error is ≤ ``tol × max(price, 1e-300)`` relative (default
    1e-12), or the bracket is narrower than 1e-15. Wherever vega is not negligible this puts the
    volatility within about 1e-10 of the true one; deep in- or out-of-the-money, where the price
    hardly depends on volatility, the volatility is ill-conditioned but still reproduces the price.

    Returns NaN where there is no solution: t ≤ 0, price below the no-arbitrage floor
    (discounted forward intrinsic value) or above the price at IV_MAX, or non-finite input.
    A price at (or within float noise of) the floor returns IV_MIN.
    """
    p, s, k, t, r, q, c = np.broadcast_arrays(
        np.asarray(price, dtype=np.float64),
        np.asarray(spot, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(t_years, dtype=np.float64),
        np.asarray(rate, dtype=np.float64),
        np.asarray(div_yield, dtype=np.float64),
        np.asarray(is_call, dtype=np.bool_),
    )
    shape = p.shape
    p, s, k, t, r, q, c = (a.ravel() for a in (p, s, k, t, r, q, c))
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p) & np.isfinite(s) & np.isfinite(k) & np.isfinite(t) & np.isfinite(r) & np.isfinite(q)
    ok = finite & (t > 0.0) & (s > 0.0) & (k > 0.0)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return out.reshape(shape)
    p, s, k, t, r, q, c = (a[idx] for a in (p, s, k, t, r, q, c))

    floor = bs_price(s, k, t, 0.0, r, q, c)
    ceiling = bs_price(s, k, t, IV_MAX, r, q, c)
    noise = 1e-14 * np.maximum(s, k)
    at_floor = p <= floor + noise
    solvable = ~at_floor & (p <= ceiling)
    result = np.where(at_floor & (p >= floor - noise), IV_MIN, np.nan)

    # Initial guess (Brenner–Subrahmanyam near the money, bounded to the bracket).
    fwd = s * np.exp((r - q) * t)
    guess = np.sqrt(2.0 * np.pi / t) * p / np.maximum(s * np.exp(-q * t), 1e-300)
    guess = np.where(np.abs(np.log(fwd / k)) < 0.5, guess, np.sqrt(2.0 * np.abs(np.log(fwd / k)) / t))
    active = np.flatnonzero(solvable)
    sigma = np.clip(guess[active], 0.01, 2.0)
    lo = np.full(active.size, IV_MIN)
    hi = np.full(active.size, IV_MAX)
    for _ in range(max_iter):
        if active.size == 0:
            break
        a_s, a_k, a_t, a_r, a_q, a_c, a_p = s[active], k[active], t[active], r[active], q[active], c[active], p[active]
        core = _core(a_s, a_k, a_t, sigma, a_r, a_q, a_c)
        nd1, nd2 = _cdfs(core)
        model = _price(core, nd1, nd2)
        vega = a_s * core.df_q * np.exp(-0.5 * core.d1 * core.d1) * _INV_SQRT_2PI * np.sqrt(a_t)
        diff = model - a_p
        done = (np.abs(diff) <= tol * np.maximum(a_p, 1e-300)) | (hi - lo <= 1e-15)
        result[active[done]] = sigma[done]
        high = diff > 0.0
        hi = np.where(high, sigma, hi)
        lo = np.where(high, lo, sigma)
        with np.errstate(all="ignore"):  # vega → 0 far from the money: bisection takes over
            newton = sigma - diff / vega
        bisect = 0.5 * (lo + hi)
        step_ok = np.isfinite(newton) & (newton > lo) & (newton < hi)
        sigma = np.where(step_ok, newton, bisect)
        keep = ~done
        active, sigma, lo, hi = active[keep], sigma[keep], lo[keep], hi[keep]
    if active.size:
        result[active] = sigma  # max_iter reached: the best bracketed estimate
    out[idx] = result
    return out.reshape(shape)
