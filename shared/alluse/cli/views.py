"""rich renderings of domain objects for the CLI (presentation only, no rules)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from alluse.application.run_results import RunResult
from alluse.domain.accounts import Account, CashMovement
from alluse.domain.audit import AuditRecord, ChainReport
from alluse.domain.config import AllUseConfig, diff_paths, flatten
from alluse.domain.config_versions import ConfigVersion
from alluse.domain.errors import AllUseError, ValidationFailed
from alluse.domain.fleet import FleetAllocation
from alluse.domain.indicators import average_true_range
from alluse.domain.instruments import OptionRight
from alluse.domain.market import DailyBars, OptionChain
from alluse.domain.money import format_cents
from alluse.domain.sleeves import SLEEVE_ORDER


def describe_error(error: AllUseError) -> str:
    if isinstance(error, ValidationFailed) and len(error.problems) > 1:
        return "refused, nothing changed:\n  " + "\n  ".join(error.problems)
    return str(error)


def _money(cents: int) -> str:
    return format_cents(cents)


def sleeves_table(account: Account, config: AllUseConfig) -> Table:
    weights = config.allocation.weights()
    table = Table(title="Sleeves", title_justify="left")
    for col in ("Sleeve", "Target weight", "Contributed", "Cash", "Buffer", "Free (deployable)"):
        table.add_column(col, justify="left" if col == "Sleeve" else "right")
    for kind in SLEEVE_ORDER:
        s = account.sleeve(kind)
        table.add_row(
            kind.label,
            f"{weights[kind]:.2%}",
            _money(s.contributed_cents),
            _money(s.cash_cents),
            _money(s.buffer_cents),
            _money(s.free_cents),
        )
    table.add_row(
        "Total",
        "",
        _money(sum(s.contributed_cents for s in account.sleeves.values())),
        _money(account.cash_cents),
        _money(account.buffer_cents),
        _money(account.free_cents),
        style="bold",
    )
    return table


def account_panel(account: Account, config: AllUseConfig) -> Panel:
    facts = Table.grid(padding=(0, 2))
    facts.add_row("Status", account.status.value)
    facts.add_row("Brokerage account", account.brokerage_id or "— (not linked)")
    facts.add_row("Created", account.created_at.isoformat(timespec="seconds"))
    if account.parent_id:
        facts.add_row("Parent", account.parent_id)
    facts.add_row("Audit records", str(account.audit_head.seq))
    return Panel(Group(facts, sleeves_table(account, config)), title=f"{account.account_id} — {account.name}")


def accounts_table(accounts: Sequence[Account]) -> Table:
    table = Table(title=f"Accounts ({len(accounts)})", title_justify="left")
    for col in ("Account", "Status", "Brokerage", *[k.label for k in SLEEVE_ORDER], "Buffer", "Free", "Cash"):
        table.add_column(col, justify="left" if col in ("Account", "Status", "Brokerage") else "right")
    for a in accounts:
        table.add_row(
            a.account_id,
            a.status.value,
            a.brokerage_id or "—",
            *[_money(a.sleeve(k).cash_cents) for k in SLEEVE_ORDER],
            _money(a.buffer_cents),
            _money(a.free_cents),
            _money(a.cash_cents),
        )
    return table


def fleet_table(fleet: FleetAllocation) -> Table:
    statuses = ", ".join(f"{s.value} {n}" for s, n in sorted(fleet.by_status.items(), key=lambda i: i[0].value))
    table = Table(title=f"Fleet allocation — {fleet.accounts} accounts ({statuses or 'none'})", title_justify="left")
    for col in ("Sleeve", "Cash", "Buffer", "Free (deployable)", "Share of cash"):
        table.add_column(col, justify="left" if col == "Sleeve" else "right")
    total = fleet.cash_cents
    for kind in SLEEVE_ORDER:
        s = fleet.by_sleeve[kind]
        share = f"{s.cash_cents / total:.2%}" if total else "—"  # display ratio only, not money
        table.add_row(kind.label, _money(s.cash_cents), _money(s.buffer_cents), _money(s.free_cents), share)
    table.add_row("Total", _money(total), _money(fleet.buffer_cents), _money(fleet.free_cents), "", style="bold")
    return table


def movements_table(movements: Sequence[CashMovement]) -> Table:
    table = Table(title="Cash movements", title_justify="left")
    for col in ("Id", "When", "Kind", "Amount", *[k.label for k in SLEEVE_ORDER], "Reason"):
        table.add_column(col)
    for m in movements:
        table.add_row(
            m.movement_id,
            m.at.isoformat(timespec="seconds"),
            m.kind.value,
            _money(m.amount_cents),
            *[_money(m.by_sleeve.get(k, 0)) for k in SLEEVE_ORDER],
            m.reason,
        )
    return table


def config_table(config: AllUseConfig, defaults: AllUseConfig, global_config: AllUseConfig, scope: str) -> Table:
    changed_globally = diff_paths(defaults, global_config)
    changed_here = diff_paths(global_config, config)
    table = Table(title=f"Effective configuration — {scope}", title_justify="left")
    table.add_column("Setting")
    table.add_column("Value")
    table.add_column("Source")
    for path, value in flatten(config):
        source = "account" if path in changed_here else "global" if path in changed_globally else "default"
        style = None if source == "default" else "bold yellow"
        table.add_row(path, value, source, style=style)
    return table


def config_history_table(versions: Sequence[ConfigVersion]) -> Table:
    table = Table(title="Configuration versions", title_justify="left")
    for col in ("Scope", "Version", "When", "Author", "Reason", "Changes"):
        table.add_column(col)
    for v in versions:
        table.add_row(
            v.scope, str(v.version), v.at.isoformat(timespec="seconds"), v.author, v.reason, str(dict(v.changes))
        )
    return table


def audit_reports_table(reports: Sequence[ChainReport]) -> Table:
    table = Table(title="Audit chains", title_justify="left")
    for col in ("Scope", "Records checked", "Result"):
        table.add_column(col)
    for r in reports:
        result = "[green]intact[/green]" if r.ok else f"[red]broken at record {r.first_broken_seq}: {r.problem}[/red]"
        table.add_row(r.scope, str(r.checked), result)
    return table


def audit_trail_table(records: Sequence[AuditRecord]) -> Table:
    table = Table(title="Audit trail", title_justify="left")
    for col in ("Seq", "When", "Actor", "Action", "Details", "Hash"):
        table.add_column(col)
    for r in records:
        table.add_row(
            str(r.seq), r.at.isoformat(timespec="seconds"), r.actor, r.action, str(dict(r.details)), r.hash[:12]
        )
    return table


def bars_table(bars: DailyBars, days: int, atr_period: int) -> Table:
    atr = average_true_range(bars.high, bars.low, bars.close, atr_period)
    table = Table(title=f"{bars.ticker} daily bars (ATR-{atr_period})", title_justify="left")
    for col in ("Session", "Open", "High", "Low", "Close", "Volume", f"ATR-{atr_period}"):
        table.add_column(col, justify="left" if col == "Session" else "right")
    for i in range(max(len(bars) - days, 0), len(bars)):
        table.add_row(
            str(bars.dates[i]),
            *(f"{v[i]:,.2f}" for v in (bars.open, bars.high, bars.low, bars.close)),
            f"{int(bars.volume[i]):,}",
            "—" if np.isnan(atr[i]) else f"{atr[i]:.2f}",
        )
    return table


def chain_table(chain: OptionChain, expiry: date, strikes: int) -> Table:
    """Puts on the left, calls on the right, `strikes` rows each side of the spot."""
    puts, calls = chain.rows(expiry, OptionRight.PUT), chain.rows(expiry, OptionRight.CALL)
    by_strike = {int(chain.strike_cents[r]): r for r in calls}
    centre = int(np.searchsorted(chain.strike_cents[puts], chain.spot * 100))
    shown = puts[max(centre - strikes, 0) : centre + strikes]
    title = f"{chain.underlying} {expiry} — spot {chain.spot:,.2f} at {chain.as_of:%Y-%m-%d %H:%M %Z}"
    table = Table(title=title, title_justify="left")
    for col in ("Put bid", "ask", "Δ", "IV", "OI", "Strike", "Call bid", "ask", "Δ", "IV", "OI"):
        table.add_column(
            col, justify="center" if col == "Strike" else "right", style="bold" if col == "Strike" else None
        )
    for p in shown:
        strike = int(chain.strike_cents[p])
        c = by_strike.get(strike)
        table.add_row(
            *_option_cells(chain, p),
            format_cents(strike).lstrip("$"),
            *(_option_cells(chain, c) if c is not None else [""] * 5),
        )
    return table


def _option_cells(chain: OptionChain, row: int) -> list[str]:
    return [
        format_cents(int(chain.bid_cents[row])).lstrip("$"),
        format_cents(int(chain.ask_cents[row])).lstrip("$"),
        f"{chain.delta[row]:+.2f}",
        f"{chain.iv[row]:.0%}",
        f"{int(chain.open_interest[row]):,}",
    ]


def _pct(part: float | None) -> str:
    return "—" if part is None else f"{part * 100:.1f} %"


def run_summary_table(result: RunResult) -> Table:
    """The fleet's run in one table: equity, income, trades, win rate, week types, protocol events."""
    table = Table(title=f"Protocol run — {len(result.accounts)} accounts × {result.weeks} weeks (seed {result.seed})")
    table.add_column("Figure")
    table.add_column("Value", justify="right")
    start, end = result.start_equity_cents, result.end_equity_cents
    hits, judged = result.mode_hits()
    type_hits, typed = result.type_hits()
    tax = result.estimated_tax_cents()
    rows = [
        ("Start equity", _money(start)),
        ("End equity", _money(end)),
        ("Change", f"{_money(end - start)} ({_pct((end - start) / start if start else None)})"),
        ("Income (realised − commissions)", _money(result.income_cents)),
        ("Estimated tax / income after it", f"{_money(tax)} / {_money(result.income_cents - tax)}"),
        ("Premium collected", _money(result.premium_cents)),
        ("Trades (fills)", f"{result.trades:,}"),
        ("Winning account-weeks", _pct(result.win_rate)),
        ("Week-mode guess accuracy", f"{hits}/{judged} ({_pct(hits / judged if judged else None)})"),
        ("Week-type prediction accuracy", f"{type_hits}/{typed} ({_pct(type_hits / typed if typed else None)})"),
        ("Week types", ", ".join(f"{code} {n}" for code, n in sorted(result.week_type_counts().items())) or "—"),
        ("Forks / merges", f"{len(result.forks)} / {len(result.merges)}"),
        ("Failed accounts", str(sum(a.failure is not None for a in result.accounts))),
        ("Account-weeks per second", f"{result.account_weeks / result.elapsed_seconds:,.1f}"),
        ("DynamoDB requests per account-week", f"{result.dynamodb_requests / max(result.account_weeks, 1):.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for kind, count in result.protocol_events.most_common():
        table.add_row(f"event: {kind}", f"{count:,}")
    return table


def account_runs_table(result: RunResult) -> Table:
    table = Table(title="Accounts")
    for name in ("Account", "Start", "End", "Income", "Trades", "Win rate", "Top week type", "Failure"):
        table.add_column(name, justify="right" if name in {"Start", "End", "Income", "Trades", "Win rate"} else "left")
    for run in result.accounts:
        top = run.week_type_counts().most_common(1)
        table.add_row(
            run.account_id,
            _money(run.start_equity_cents),
            _money(run.end_equity_cents),
            _money(run.income_cents),
            str(run.trades),
            _pct(run.win_rate),
            f"{top[0][0]} ({top[0][1]})" if top else "—",
            run.failure or "",
        )
    return table
