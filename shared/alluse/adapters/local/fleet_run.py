"""The main job on this machine: a fleet run on the embedded platform, spread over a process pool.

Accounts never depend on each other, so the fleet is split into shards, one per worker process. Each
worker builds its own embedded platform (moto store, paper broker, the same seeded market, a simulated
clock), creates its shard of the seeded fleet plan, runs the protocol and returns what it measured.
`workers=1` runs in this process. On AWS the same split is Step Functions' map over accounts.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import time as wallclock
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from queue import Empty
from typing import Any

from alluse.adapters.local.notifier import FileNotifier
from alluse.adapters.local.runtime import LocalRuntime, dynamodb_requests
from alluse.adapters.paper.broker import PaperBroker, PaperBrokerSettings
from alluse.adapters.sim.market import SimulatedMarket
from alluse.application.accounts import AccountService
from alluse.application.alerting import AlertDesk
from alluse.application.clock import SimulatedClock
from alluse.application.configuration import ConfigChange, ConfigurationService
from alluse.application.fleet import create_fleet, plan_fleet
from alluse.application.lifecycle import LifecycleWatchdog
from alluse.application.run_results import AccountRun, RunResult
from alluse.application.simulation import ProtocolRun
from alluse.application.trading import TradingCycle
from alluse.domain.accounts import Account
from alluse.domain.config import effective_config, to_jsonable
from alluse.domain.errors import ValidationFailed
from alluse.domain.market import NEW_YORK
from alluse.domain.money import parse_dollars

DEFAULT_FIRST_MONDAY = date(2026, 1, 5)


@dataclass(frozen=True)
class RunSpec:
    accounts: int = 100
    weeks: int = 26
    seed: int = 7
    first_monday: date = DEFAULT_FIRST_MONDAY
    overrides: Mapping[str, Any] = field(default_factory=dict)  # the global configuration layer of the run
    csv_dir: Path | None = None  # real bars instead of the generated market
    alerts_dir: Path | None = None  # where each worker writes its alerts (JSON lines); None: not kept
    workers: int = 1
    history_days: int = 200  # generated market before the first week: ATR, week-mode reference volatility
    events_per_week: int = 20  # event texts kept per account-week for the report (counts are kept in full)

    def __post_init__(self) -> None:
        if self.accounts < 1:
            raise ValidationFailed(f"accounts must be at least 1 (got {self.accounts})", field="accounts")
        if self.weeks < 1:
            raise ValidationFailed(f"weeks must be at least 1 (got {self.weeks})", field="weeks")
        if self.first_monday.weekday() != 0:
            raise ValidationFailed(f"{self.first_monday} is not a Monday", field="first_monday")
        if self.workers < 1:
            raise ValidationFailed(f"workers must be at least 1 (got {self.workers})", field="workers")
        if not 30 <= self.history_days <= 3650:
            raise ValidationFailed(f"history_days must be 30-3650 (got {self.history_days})", field="history_days")
        if self.events_per_week < 0:
            raise ValidationFailed(
                f"events_per_week must be 0 or more (got {self.events_per_week})", field="events_per_week"
            )


@dataclass(frozen=True)
class ShardResult:
    accounts: list[AccountRun]
    events: Counter[str]
    dynamodb_requests: int
    not_created: list[str]
    forks: list[tuple[str, str, int, date]]
    merges: list[tuple[str, str, int, date]]


def run_fleet(spec: RunSpec, on_week: Callable[[int], None] = lambda n: None) -> tuple[RunResult, list[str]]:
    """Run the fleet; `on_week` hears each completed account-week shard by shard (for a progress bar).
    Returns the result and the accounts that could not be created (with why)."""
    started = wallclock.perf_counter()
    workers = min(spec.workers, spec.accounts)
    shards = [run_shard(spec, 0, 1, on_week)] if workers == 1 else _run_pool(spec, workers, on_week)
    accounts = sorted((a for s in shards for a in s.accounts), key=lambda a: a.account_id)
    events: Counter[str] = Counter()
    for shard in shards:
        events.update(shard.events)
    result = RunResult(
        seed=spec.seed,
        weeks=spec.weeks,
        accounts=tuple(accounts),
        elapsed_seconds=wallclock.perf_counter() - started,
        dynamodb_requests=sum(s.dynamodb_requests for s in shards),
        protocol_events=events,
        forks=tuple(sorted(f for s in shards for f in s.forks)),
        merges=tuple(sorted(m for s in shards for m in s.merges)),
        tax=effective_config(to_jsonable(spec.overrides or {})).tax,
    )
    return result, [why for s in shards for why in s.not_created]


def _run_pool(spec: RunSpec, workers: int, on_week: Callable[[int], None]) -> list[ShardResult]:
    context = multiprocessing.get_context("spawn")  # a clean interpreter each: no moto or locks inherited
    with context.Manager() as manager:
        progress = manager.Queue()
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(_pooled_shard, spec, shard, workers, progress) for shard in range(workers)]
            while not all(f.done() for f in futures):
                with contextlib.suppress(Empty):
                    on_week(progress.get(timeout=0.2))
            while not progress.empty():
                on_week(progress.get())
            return [f.result() for f in futures]


def _pooled_shard(spec: RunSpec, shard: int, shards: int, progress: Any) -> ShardResult:
    return run_shard(spec, shard, shards, progress.put)


def run_shard(spec: RunSpec, shard: int, shards: int, on_week: Callable[[int], None]) -> ShardResult:
    """One worker's part of the fleet: plans shard, shard + shards, ... of the seeded fleet plan."""
    clock = SimulatedClock(datetime.combine(spec.first_monday - timedelta(days=3), time(9), NEW_YORK))
    market = _market(spec, clock)
    with LocalRuntime(None) as runtime:
        configuration = ConfigurationService(runtime.store, clock)
        if spec.overrides:
            configuration.change(ConfigChange(spec.overrides, author="fleet-run", reason="run configuration"))
        cfg = configuration.effective()
        base = parse_dollars(cfg.account.initial_capital, field="account.initial_capital")
        every = plan_fleet(spec.accounts, seed=spec.seed, base_capital_cents=base)
        # Ids from the fleet plan, not from each shard's own store, so they are unique across shards.
        plans = [replace(p, account_id=f"ACC-{i + 1:05d}") for i, p in enumerate(every) if i % shards == shard]
        created = create_fleet(AccountService(runtime.store, clock), plans, actor="fleet-run")
        broker = PaperBroker(market, market.calendar, clock, PaperBrokerSettings.from_config(cfg))
        for account in created.created:
            broker.open_account(account.brokerage_id or "", account.cash_cents)
        desk = AlertDesk(_notifier(spec, shard), cfg.alerts)
        cycle = TradingCycle(runtime.store, broker, market, market.calendar, clock, desk, carry_state=True)
        watchdog = LifecycleWatchdog(
            runtime.store, broker, market, market.calendar, clock, desk, link=_paper_linker(shard)
        )
        run = ProtocolRun(
            cycle,
            market,
            market.calendar,
            clock.advance_to,
            cfg,
            step_broker=broker.step,
            events_per_week=spec.events_per_week,
            watchdog=watchdog,
        )
        requests_before = dynamodb_requests()
        accounts = run.run(
            created.created, spec.first_monday, spec.weeks, on_week=lambda n: on_week(len(created.created))
        )
        requests = dynamodb_requests() - requests_before
    not_created = [f"{p.name}: {why}" for p, why in created.failed]
    return ShardResult(accounts, run.events, requests, not_created, run.forks, run.merges)


def _paper_linker(shard: int) -> Callable[[Account], str]:
    """The local stand-in for the operator who opens a brokerage account for a fork's child (A9): a paper
    account whose number follows from the child's id (8 digits, never one of the fleet plan's 7-digit
    numbers), so a retry after a crash links the account it opened, not a second one."""

    def link(child: Account) -> str:
        digest = int.from_bytes(hashlib.sha256(child.account_id.encode()).digest()[:8], "big")
        return f"DU{10_000_000 + digest % 90_000_000}"

    return link


class _Discard:
    def deliver(self, alert: object) -> None:
        """Alerts of a run without an alerts directory are counted by the run, not kept."""


def _notifier(spec: RunSpec, shard: int) -> FileNotifier | _Discard:
    if spec.alerts_dir is None:
        return _Discard()
    path = spec.alerts_dir / f"alerts-{shard}.jsonl"
    path.unlink(missing_ok=True)
    return FileNotifier(path, log=False)


def _market(spec: RunSpec, clock: SimulatedClock) -> SimulatedMarket:
    if spec.csv_dir is not None:
        return SimulatedMarket.from_csv(spec.csv_dir, clock)
    start = spec.first_monday - timedelta(days=spec.history_days)
    end = spec.first_monday + timedelta(weeks=spec.weeks, days=14)
    return SimulatedMarket.generated(start, end, clock, seed=spec.seed)
