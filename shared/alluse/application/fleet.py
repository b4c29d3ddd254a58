"""The main job's first step: create a fleet of independent accounts from a seeded plan."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alluse.application.accounts import AccountService, NewAccount
from alluse.domain.accounts import Account
from alluse.domain.errors import AllUseError

# A few per-account overrides the demo hands out, so the fleet shows that accounts differ.
DEMO_OVERRIDES: tuple[dict[str, Any], ...] = (
    {"gen": {"delta_band": {"min": "0.42", "max": "0.48"}}},
    {"rev": {"tickers": ["AAPL", "MSFT"]}},
    {"allocation": {"gen": "0.50", "rev": "0.25", "com": "0.25"}},
    {"hitl": {"premium_floor_policy": "skip"}},
)


@dataclass(frozen=True)
class FleetResult:
    created: list[Account]
    failed: list[tuple[NewAccount, str]]


def plan_fleet(
    count: int, *, seed: int, base_capital_cents: int, override_every: int = 10, brokerage_prefix: str = "DU"
) -> list[NewAccount]:
    """A deterministic plan: capital around the default, one paper brokerage id each, some overrides."""
    if count <= 0:
        raise ValueError("count must be positive")
    rng = random.Random(seed)
    numbers = rng.sample(range(1_000_000, 10_000_000), count)  # distinct 7-digit brokerage numbers
    plans = []
    for i in range(count):
        multiple = rng.choice((1, 1, 1, 2)) if i % 3 else 1  # most accounts at the default capital
        overrides = DEMO_OVERRIDES[(i // override_every) % len(DEMO_OVERRIDES)] if i % override_every == 0 else None
        plans.append(
            NewAccount(
                capital_cents=base_capital_cents * multiple,
                name=f"Fleet account {i + 1}",
                brokerage_id=f"{brokerage_prefix}{numbers[i]}",
                overrides=overrides,
            )
        )
    return plans


def create_fleet(
    service: AccountService,
    plans: Sequence[NewAccount],
    *,
    actor: str,
    on_progress: Callable[[], None] = lambda: None,
) -> FleetResult:
    """Create each account on its own (one transaction each), under one reading of the global
    configuration; one account's failure is reported and the rest go on."""
    created: list[Account] = []
    failed: list[tuple[NewAccount, str]] = []
    global_layer = service.global_layer()
    for plan in plans:
        try:
            created.append(service.create(plan, actor=actor, global_layer=global_layer))
        except AllUseError as err:
            failed.append((plan, str(err)))
        on_progress()
    return FleetResult(created, failed)
