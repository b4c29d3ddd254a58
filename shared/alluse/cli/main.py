"""`alluse`: the command-line door to the use cases (local, embedded backend).

Every expected error is printed as one clear line on stderr with exit code 1; usage errors exit 2.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from alluse.adapters.local.runtime import LocalRuntime, default_state_dir
from alluse.application.accounts import AccountService, NewAccount
from alluse.application.audit import AuditService
from alluse.application.clock import SimulatedClock, SystemClock
from alluse.application.configuration import ConfigChange, ConfigurationService
from alluse.application.market_ports import MarketData
from alluse.cli import views
from alluse.cli.reference import config_reference_markdown
from alluse.domain.accounts import AccountStatus
from alluse.domain.config import default_config, effective_config, parse_assignments
from alluse.domain.config_versions import GLOBAL_SCOPE
from alluse.domain.errors import AllUseError, ValidationFailed
from alluse.domain.fleet import summarize
from alluse.domain.market import NEW_YORK
from alluse.domain.money import parse_dollars

app = typer.Typer(no_args_is_help=True, add_completion=False, help="ALL-USE: weekly options-income protocol.")
accounts_app = typer.Typer(no_args_is_help=True, help="Create, fund, link and inspect main accounts.")
config_app = typer.Typer(no_args_is_help=True, help="Show and change configuration (global or per account).")
audit_app = typer.Typer(no_args_is_help=True, help="Read and verify the hash-chained audit trail.")
app.add_typer(accounts_app, name="accounts")
app.add_typer(config_app, name="config")
market_app = typer.Typer(no_args_is_help=True, help="Look at the simulated market: bars and option chains.")
app.add_typer(audit_app, name="audit")
app.add_typer(market_app, name="market")

# Piped output (CI logs, files) gets room for the wide tables instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() else 150
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


@dataclass
class Platform:
    accounts: AccountService
    config: ConfigurationService
    audit: AuditService


class _State:
    state_dir: Path = default_state_dir()


StateDirOption = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Where the local backend keeps its state (default $ALLUSE_HOME or ~/.alluse)."),
]
ActorOption = Annotated[str | None, typer.Option("--actor", help="Who is acting (recorded in the audit trail).")]


@app.callback()
def main(state_dir: StateDirOption = None) -> None:
    if state_dir is not None:
        _State.state_dir = state_dir


@contextmanager
def _clear_errors() -> Iterator[None]:
    """A domain error becomes one clear line on stderr and exit code 1, never a traceback."""
    try:
        yield
    except AllUseError as error:
        err.print(f"[red]error:[/red] {views.describe_error(error)}", highlight=False)
        raise typer.Exit(1) from None


@contextmanager
def _platform(state_dir: Path | None = None) -> Iterator[Platform]:
    """The use cases over the local backend."""
    with _clear_errors(), LocalRuntime(state_dir or _State.state_dir) as runtime:
        clock = SystemClock()
        yield Platform(
            AccountService(runtime.store, clock),
            ConfigurationService(runtime.store, clock),
            AuditService(runtime.store),
        )


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("ALLUSE_ACTOR") or getpass.getuser()


# --- accounts ----------------------------------------------------------------------------------


@accounts_app.command("create")
def accounts_create(
    capital: Annotated[
        str | None, typer.Option(help="Initial capital in dollars (default from configuration).")
    ] = None,
    name: Annotated[str, typer.Option(help="A name for people.")] = "",
    broker: Annotated[str | None, typer.Option(help="Brokerage account id to link now, e.g. DU1234567.")] = None,
    account_id: Annotated[str | None, typer.Option("--id", help="Choose the account id (default ACC-nnnnn).")] = None,
    actor: ActorOption = None,
) -> None:
    """Create a main account with its sleeves, funded with its initial capital."""
    with _platform() as p:
        cents = parse_dollars(capital, field="capital") if capital is not None else _default_capital_cents(p)
        request = NewAccount(capital_cents=cents, name=name, brokerage_id=broker, account_id=account_id)
        account = p.accounts.create(request, actor=_actor(actor))
        out.print(views.account_panel(account, p.config.effective(account.account_id)))


@accounts_app.command("list")
def accounts_list() -> None:
    """Every account with its sleeves' cash (no scan: the store's account index)."""
    with _platform() as p:
        accounts = p.accounts.list_accounts()
        out.print(views.accounts_table(accounts))
        out.print(views.fleet_table(summarize(accounts)))


@accounts_app.command("show")
def accounts_show(account_id: str) -> None:
    """One account: status, brokerage link, sleeves and cash movements."""
    with _platform() as p:
        account = p.accounts.get(account_id)
        out.print(views.account_panel(account, p.config.effective(account_id)))
        out.print(views.movements_table(p.accounts.movements(account_id)))


@accounts_app.command("link-broker")
def accounts_link_broker(account_id: str, brokerage_id: str, actor: ActorOption = None) -> None:
    """Link the account to its one brokerage account; it becomes ACTIVE."""
    with _platform() as p:
        account = p.accounts.link_broker(account_id, brokerage_id, actor=_actor(actor))
        out.print(f"{account.account_id} linked to {account.brokerage_id}; status {account.status.value}")


@accounts_app.command("deposit")
def accounts_deposit(
    account_id: str,
    amount: str,
    reason: Annotated[str, typer.Option(help="Why (kept with the movement).")] = "",
    actor: ActorOption = None,
) -> None:
    """Deposit dollars; split across sleeves by target weight (buffers grow with it)."""
    with _platform() as p:
        cents = parse_dollars(amount, field="amount")
        account = p.accounts.deposit(account_id, cents, actor=_actor(actor), reason=reason)
        out.print(views.account_panel(account, p.config.effective(account_id)))


@accounts_app.command("withdraw")
def accounts_withdraw(
    account_id: str,
    amount: str,
    reason: Annotated[str, typer.Option(help="Why (kept with the movement).")] = "",
    actor: ActorOption = None,
) -> None:
    """Withdraw dollars from free cash by target weight; buffers are never withdrawn."""
    with _platform() as p:
        cents = parse_dollars(amount, field="amount")
        account = p.accounts.withdraw(account_id, cents, actor=_actor(actor), reason=reason)
        out.print(views.account_panel(account, p.config.effective(account_id)))


@accounts_app.command("set-status")
def accounts_set_status(
    account_id: str,
    status: Annotated[AccountStatus, typer.Argument(case_sensitive=False)],
    reason: Annotated[str, typer.Option(help="Why (required; recorded in the audit trail).")],
    actor: ActorOption = None,
) -> None:
    """Move the account to another status (only legal transitions)."""
    with _platform() as p:
        account = p.accounts.change_status(account_id, status, actor=_actor(actor), reason=reason)
        out.print(f"{account.account_id} is now {account.status.value}")


# --- config ------------------------------------------------------------------------------------


@config_app.command("show")
def config_show(
    account_id: Annotated[
        str | None, typer.Option("--account", help="Show this account's effective configuration.")
    ] = None,
) -> None:
    """The effective configuration, marking what is overridden globally or for the account."""
    with _platform() as p:
        global_cfg = p.config.effective()
        cfg = p.config.effective(account_id) if account_id else global_cfg
        out.print(views.config_table(cfg, default_config(), global_cfg, account_id or GLOBAL_SCOPE))


@config_app.command("set")
def config_set(
    assignments: Annotated[list[str], typer.Argument(help="setting=value, e.g. gen.delta_band.min=0.42")],
    reason: Annotated[str, typer.Option(help="Why (required; kept with the version).")],
    account_id: Annotated[str | None, typer.Option("--account", help="Override for this account only.")] = None,
    author: Annotated[str | None, typer.Option(help="Who makes the change (default $ALLUSE_ACTOR or user).")] = None,
) -> None:
    """Change settings as one new version; refused whole if any rule is broken."""
    with _platform() as p:
        change = ConfigChange(parse_assignments(assignments), _actor(author), reason, account_id)
        version = p.config.change(change)
        out.print(f"{version.scope} configuration version {version.version} by {version.author}: {version.reason}")


@config_app.command("history")
def config_history(
    account_id: Annotated[str | None, typer.Option("--account", help="This account's versions.")] = None,
) -> None:
    """Every configuration version: who, when, why, what."""
    with _platform() as p:
        out.print(views.config_history_table(p.config.history(account_id)))


@config_app.command("reference")
def config_reference() -> None:
    """Every setting with its default and meaning, as Markdown (docs/configuration.md)."""
    print(config_reference_markdown(), end="")


# --- audit -------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    account_id: Annotated[str | None, typer.Option("--account", help="Verify one account (default: all).")] = None,
) -> None:
    """Check every hash chain; report the first broken link. Exit code 1 if any is broken."""
    with _platform() as p:
        reports = [p.audit.verify(account_id)] if account_id else p.audit.verify_all()
    out.print(views.audit_reports_table(reports))
    broken = [r for r in reports if not r.ok]
    if broken:
        for r in broken:
            err.print(f"[red]broken:[/red] {r.scope} at record {r.first_broken_seq}: {r.problem}")
        raise typer.Exit(1)


@audit_app.command("show")
def audit_show(scope: Annotated[str, typer.Argument(help="Account id, or GLOBAL.")]) -> None:
    """The audit trail of an account (or of global settings)."""
    with _platform() as p:
        out.print(views.audit_trail_table(p.audit.trail(scope)))


# --- market ------------------------------------------------------------------------------------

SeedOption = Annotated[int, typer.Option(help="Seed of the simulated market (same seed, same market).")]
CsvOption = Annotated[
    Path | None, typer.Option("--csv", help="Directory of <TICKER>.csv files to use instead of simulated bars.")
]
EpochOption = Annotated[str, typer.Option(help="First session the simulation starts from (the path depends on it).")]


def _market(moment: datetime, seed: int, csv: Path | None, epoch: str) -> MarketData:
    # Imported here: the market stack (pandas, exchange_calendars) would slow every other command's start.
    from alluse.adapters.sim.calendar import NyseCalendar
    from alluse.adapters.sim.market import SimulatedMarket

    clock = SimulatedClock(moment)
    if csv is not None:
        return SimulatedMarket.from_csv(csv, clock)
    calendar = NyseCalendar()
    return SimulatedMarket.generated(_parse_day(epoch, "epoch"), calendar.last_session, clock, seed=seed)


@market_app.command("bars")
def market_bars(
    ticker: str,
    through: Annotated[str, typer.Option(help="Last session shown (YYYY-MM-DD).")],
    days: Annotated[int, typer.Option(min=1, max=500, help="How many sessions to show.")] = 10,
    atr_period: Annotated[int, typer.Option(min=2, max=100, help="ATR period (the protocol's default is 14).")] = 14,
    seed: SeedOption = 7,
    csv: CsvOption = None,
    epoch: EpochOption = "2024-01-02",
) -> None:
    """Daily bars of a ticker with their ATR, as known after the close of `through`."""
    with _clear_errors():
        day = _parse_day(through, "through")
        market = _market(datetime.combine(day, time(23, 59), tzinfo=NEW_YORK), seed, csv, epoch)
        out.print(views.bars_table(market.daily_bars(ticker.upper(), through=day), days, atr_period))


@market_app.command("chain")
def market_chain(
    ticker: str,
    at: Annotated[str, typer.Option(help="Instant, America/New_York: 'YYYY-MM-DD HH:MM'.")],
    expiry: Annotated[str | None, typer.Option(help="Expiry to show (default: the nearest).")] = None,
    strikes: Annotated[int, typer.Option(min=1, max=100, help="Strikes shown on each side of the money.")] = 8,
    seed: SeedOption = 7,
    csv: CsvOption = None,
    epoch: EpochOption = "2024-01-02",
) -> None:
    """One expiry of a ticker's option chain around the money: bid/ask, delta, IV, open interest."""
    with _clear_errors():
        moment = _parse_instant(at)
        chain = _market(moment, seed, csv, epoch).chain(ticker.upper(), moment)
        chosen = _parse_day(expiry, "expiry") if expiry else chain.expiries()[0]
        if chosen not in chain.expiries():
            listed = ", ".join(d.isoformat() for d in chain.expiries()[:8])
            raise ValidationFailed(f"{chosen} is not a listed expiry (nearest: {listed}, ...)", field="expiry")
        out.print(views.chain_table(chain, chosen, strikes))


def _parse_day(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(f"'{text}' is not a date (YYYY-MM-DD)", field=field) from None


def _parse_instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(f"'{text}' is not a time ('YYYY-MM-DD HH:MM', New York)", field="at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=NEW_YORK)


# --- main job ----------------------------------------------------------------------------------


@app.command("demo")
def demo(
    accounts: Annotated[int, typer.Option(min=1, max=5000, help="How many independent accounts.")] = 100,
    weeks: Annotated[int, typer.Option(min=1, max=520, help="How many weeks of the protocol to run.")] = 26,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the fleet plan and the simulated market.")] = 7,
    config: Annotated[
        Path | None, typer.Option(help="JSON file of global configuration overrides (nested, like config show).")
    ] = None,
    market_csv: Annotated[
        Path | None, typer.Option(help="Directory of <TICKER>.csv daily bars instead of the generated market.")
    ] = None,
    first_monday: Annotated[
        str | None, typer.Option(help="Monday the run starts (YYYY-MM-DD); default: the run's own.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (accounts are split).")] = (
        os.cpu_count() or 1
    ),
    out_dir: Annotated[Path, typer.Option(help="Where the report, results and alerts are written.")] = Path(
        ".alluse/demo"
    ),
    quiet: Annotated[bool, typer.Option(help="Only the fleet summary, not the per-account table.")] = False,
) -> None:
    """The main job: a seeded fleet runs the weekly protocol on the paper broker and simulated market."""
    from alluse.adapters.local.fleet_run import RunSpec, run_fleet  # heavy: only this command needs them
    from alluse.reporting import periods
    from alluse.reporting.html import render_html
    from alluse.reporting.results import run_to_jsonable

    with _clear_errors():
        spec = RunSpec(
            accounts=accounts,
            weeks=weeks,
            seed=seed,
            overrides=_read_overrides(config),
            csv_dir=market_csv,
            alerts_dir=out_dir,
            workers=workers,
        )
        if first_monday is not None:  # else RunSpec's default: one place says when a run starts
            spec = replace(spec, first_monday=_parse_day(first_monday, "first_monday"))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        with Progress(
            TextColumn("running the protocol"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out
        ) as progress:
            task = progress.add_task("account-weeks", total=accounts * weeks)
            result, not_created = run_fleet(spec, on_week=lambda n: progress.advance(task, n))
    if not quiet:
        out.print(views.account_runs_table(result))
    out.print(views.run_summary_table(result))
    report = out_dir / "report.html"
    report.write_text(render_html(result), encoding="utf-8")
    (out_dir / "results.json").write_text(json.dumps(run_to_jsonable(result), indent=1), encoding="utf-8")
    for period in periods.PERIODS:  # weekly, monthly, quarterly: the fleet's rows, then each account's
        table = periods.rows(result, period)
        (out_dir / f"{period}ly.csv").write_text(periods.to_csv(table), encoding="utf-8")
        (out_dir / f"{period}ly.json").write_text(json.dumps(periods.to_jsonable(table), indent=1), encoding="utf-8")
    out.print(
        f"report: {report} (opens offline) · results: {out_dir / 'results.json'} · weekly/monthly/quarterly"
        f" CSV and JSON: {out_dir}/{{weekly,monthly,quarterly}}.{{csv,json}} · alerts: {out_dir}/alerts-*.jsonl"
    )
    for why in not_created:
        err.print(f"[red]not created:[/red] {why}")
    if not_created or any(a.failure for a in result.accounts):
        raise typer.Exit(1)


def _read_overrides(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except (OSError, json.JSONDecodeError) as error:
        raise ValidationFailed(f"cannot read configuration file {path}: {error}", field="config") from None
    if not isinstance(data, dict):
        raise ValidationFailed(f"{path} must hold a JSON object of settings", field="config")
    effective_config(data)  # refused here, naming the setting, before any account exists
    return data


def _default_capital_cents(p: Platform) -> int:
    return parse_dollars(p.config.effective().account.initial_capital, field="account.initial_capital")


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
