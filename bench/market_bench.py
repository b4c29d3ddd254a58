"""Benchmark of the simulated market (prints figures; not a test).

    python -m bench.market_bench        (or: make bench)

Sections are functions returning ``Result`` rows; ``main`` runs them and prints one table with
PASS / FAIL against each target. To add a section (e.g. paper-broker round trips), write a
``bench_<name>() -> list[Result]`` and append it to ``SECTIONS``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from alluse.adapters.sim.chains import ChainSettings, generate_chain, listed_expiries
from alluse.domain.market import NEW_YORK
from alluse.domain.pricing import bs_price_greeks

NY = NEW_YORK

# Realistic spots and realised vols (late 2025 levels).
TICKERS: dict[str, tuple[float, float]] = {
    "TSLA": (250.0, 0.55),
    "NVDA": (180.0, 0.45),
    "AAPL": (230.0, 0.25),
    "MSFT": (420.0, 0.22),
    "AMZN": (210.0, 0.30),
    "GOOG": (175.0, 0.28),
    "SPY": (600.0, 0.15),
    "QQQ": (520.0, 0.19),
    "IWM": (220.0, 0.22),
    "DIA": (440.0, 0.14),
}


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    target: float | None = None  # None: informative only
    higher_is_better: bool = True

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "PASS" if ok else "FAIL"

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{'≥' if self.higher_is_better else '≤'} {self.target:,.6g}"


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_pricing(n: int = 1_000_000, repeat: int = 5) -> list[Result]:
    """Price + greeks of n random options in one vectorised call, best of `repeat`."""
    rng = np.random.default_rng(0)
    spot = rng.uniform(10.0, 1000.0, n)
    strike = spot * rng.uniform(0.6, 1.5, n)
    t = rng.uniform(0.0, 2.0, n)
    vol = rng.uniform(0.05, 1.5, n)
    is_call = rng.random(n) < 0.5
    best = _best_of(lambda: bs_price_greeks(spot, strike, t, vol, 0.04, 0.01, is_call), repeat)
    return [
        Result(f"price+greeks, {n:,} options (best of {repeat})", best * 1e3, "ms"),
        Result("options priced per second (price+greeks)", n / best, "options/s", target=200_000),
    ]


def _sessions(start: date, days: int = 800) -> np.ndarray:
    d = np.arange(np.datetime64(start, "D"), np.datetime64(start, "D") + days)
    return d[np.is_busday(d)]


def bench_chains(repeat: int = 50) -> list[Result]:
    """Chain generation per ticker (median) and a full day's chains for all tickers (median of repeats)."""
    settings = ChainSettings()
    as_of = datetime(2026, 4, 9, 10, 0, tzinfo=NY)  # a Thursday: Gen-Acc's entry day
    expiries = listed_expiries(as_of.date(), _sessions(as_of.date()), settings)
    rows = {t: len(generate_chain(t, as_of, s, v, expiries, settings, 7)) for t, (s, v) in TICKERS.items()}

    per_ticker: list[float] = []
    for _ in range(repeat):
        for ticker, (spot, vol) in TICKERS.items():
            start = time.perf_counter()
            generate_chain(ticker, as_of, spot, vol, expiries, settings, 7)
            per_ticker.append(time.perf_counter() - start)

    def full_day() -> None:
        exp = listed_expiries(as_of.date(), _sessions(as_of.date()), settings)
        for ticker, (spot, vol) in TICKERS.items():
            generate_chain(ticker, as_of, spot, vol, exp, settings, 7)

    full: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        full_day()
        full.append(time.perf_counter() - start)
    return [
        Result(f"expiries listed, contracts per chain ({min(rows.values())}-{max(rows.values())})", len(expiries), ""),
        Result("contracts in a full day's chains (10 tickers)", sum(rows.values()), "contracts"),
        Result("chain generation per ticker (median)", statistics.median(per_ticker) * 1e3, "ms"),
        Result(
            f"full day's chains, {len(TICKERS)} tickers (median of {repeat})",
            statistics.median(full) * 1e3,
            "ms",
            target=20.0,
            higher_is_better=False,
        ),
    ]


SECTIONS: list[tuple[str, Callable[[], list[Result]]]] = [
    ("pricing", bench_pricing),
    ("chains", bench_chains),
]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 or float(value).is_integer() else f"{value:,.3f}"


def _print_table(results: list[tuple[str, Result]]) -> None:
    header = ("section", "measure", "value", "unit", "target", "")
    lines = [
        (
            section,
            r.name,
            _fmt(r.value),
            r.unit,
            r.target_text(),
            r.verdict,
        )
        for section, r in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    for row in [header, *lines]:
        print(
            "  ".join(
                str(cell).ljust(w) if i != 2 else str(cell).rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def _all_sections() -> list[tuple[str, Callable[[], list[Result]]]]:
    from bench.broker_bench import bench_round_trips, bench_week  # imports Result from here

    return [*SECTIONS, ("broker", bench_round_trips), ("week", bench_week)]


def main() -> int:
    results: list[tuple[str, Result]] = []
    for section, fn in _all_sections():
        results.extend((section, r) for r in fn())
    _print_table(results)
    failed = [r for _, r in results if r.verdict == "FAIL"]
    print(f"\n{'FAIL' if failed else 'PASS'}: {len(failed)} target(s) missed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
