"""A protocol run as one self-contained HTML page.

The page must open offline and from an e-mail attachment, so it references nothing outside itself: the CSS is
inline, the charts are SVG drawn here, and there is no JavaScript. Every text that comes from the run (account
names, events, failures, codes) is escaped. Money is integer cents and is formatted with integer arithmetic only;
floats are used just for SVG coordinates and percentages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date
from html import escape

from alluse.application.run_results import AccountRun, RunResult
from alluse.reporting import periods

__all__ = ["render_html"]

TITLE = "ALL-USE protocol run"
# Fixed order so runs can be compared by eye; zero counts still get a slot.
WEEK_TYPE_CODES = ("P-EW", "P-AWL", "P-RO", "P-AOL", "P-DD", "C-WAP", "C-WAP+", "C-PNO", "C-RO", "C-REC", "W-IDL")
DASH = "—"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem; color: #1f2933; }
h1 { margin-bottom: 0.2rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #d9e2ec; padding-bottom: 0.2rem; }
.meta { color: #52606d; }
table { border-collapse: collapse; margin-top: 0.5rem; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #e4e7eb; text-align: left; vertical-align: middle; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.pos { color: #0b7a3e; }
.neg { color: #b42318; }
.failure { color: #b42318; }
svg text { font-family: system-ui, sans-serif; fill: #3e4c59; }
"""


def render_html(result: RunResult) -> str:
    """The whole report page for one run."""
    body = "\n".join(
        (
            _header(result),
            _aggregates(result),
            "<h2>Fleet equity by week</h2>",
            _equity_chart(result.fleet_equity_by_week()),
            "<h2>Week types</h2>",
            _week_type_chart(result.week_type_counts()),
            "<h2>Protocol events</h2>",
            _events_table(result.protocol_events),
            "<h2>Forks and merges</h2>",
            _lineage(result),
            "<h2>Monthly</h2>",
            _period_tables(result, "month"),
            "<h2>Quarterly</h2>",
            _period_tables(result, "quarter"),
            "<h2>Accounts</h2>",
            _accounts_table(result.accounts),
        )
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{TITLE}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


# --- periods ---------------------------------------------------------------------------------------------------

_PERIOD_COLUMNS = (
    "Period",
    "Weeks",
    "End equity",
    "Income",
    "Est. tax",
    "Post-tax",
    "Return pre/post-tax",
    "Premium",
    "Reinvested",
    "Trades",
    "ATR actions",
    "Mode hits",
    "Drawdown",
    "Forks",
    "Merges",
)


def _period_tables(result: RunResult, period: periods.Period) -> str:
    """The fleet's periods, then each account's behind a drill-down (no script: <details>)."""
    fleet = _period_table(periods.fleet_rows(result, period))
    accounts = "".join(
        f"<details><summary>{_e(run.account_id)}</summary>{_period_table(rows)}</details>"
        for run in result.accounts
        if (rows := periods.account_rows(run, period, result))
    )
    return f"{fleet}\n{accounts}"


def _period_table(rows: Sequence[periods.PeriodRow]) -> str:
    head = "".join(f"<th>{c}</th>" if c == "Period" else f'<th class="num">{c}</th>' for c in _PERIOD_COLUMNS)
    body = "".join(
        "<tr>"
        f'<td>{_e(r.period)}</td><td class="num">{r.weeks}</td><td class="num">{_dollars(r.end_equity_cents)}</td>'
        f'<td class="num {_tone(r.income_cents)}">{_signed_dollars(r.income_cents)}</td>'
        f'<td class="num">{_dollars(r.estimated_tax_cents)}</td>'
        f'<td class="num {_tone(r.post_tax_income_cents)}">{_signed_dollars(r.post_tax_income_cents)}</td>'
        f'<td class="num">{r.pre_tax_return_pct or DASH} % / {r.post_tax_return_pct or DASH} %</td>'
        f'<td class="num">{_dollars(r.premium_cents)}</td><td class="num">{_dollars(r.reinvested_cents)}</td>'
        f'<td class="num">{r.trades:,}</td><td class="num">{r.atr_actions:,}</td><td class="num">{r.mode_hits}</td>'
        f'<td class="num">{_dollars(r.max_drawdown_cents)}</td>'
        f'<td class="num">{r.forks}</td><td class="num">{r.merges}</td>'
        "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


# --- forks and merges ----------------------------------------------------------------------------------------------


def _lineage(result: RunResult) -> str:
    """The lineage tree (each fork under its parent, with the money moved) and the merges."""
    if not result.forks and not result.merges:
        return '<p class="meta">No fork or merge in this run.</p>'
    funded = {child: (cents, day) for _, child, cents, day in result.forks}
    merged = {child: (into, cents, day) for child, into, cents, day in result.merges}
    children: dict[str, list[str]] = {}
    for parent, child, _, _ in result.forks:
        children.setdefault(parent, []).append(child)
    roots = sorted({p for p, _, _, _ in result.forks if p not in funded})

    def node(account_id: str) -> str:
        label = _e(account_id)
        if account_id in funded:
            cents, day = funded[account_id]
            label += f" — forked {day:%Y-%m-%d} with {_dollars(cents)}"
        if account_id in merged:
            into, cents, day = merged[account_id]
            label += f"; merged into {_e(into)} on {day:%Y-%m-%d} ({_dollars(cents)})"
        below = "".join(node(c) for c in sorted(children.get(account_id, [])))
        return f"<li>{label}{f'<ul>{below}</ul>' if below else ''}</li>"

    tree = "".join(node(r) for r in roots)
    total_forked = sum(cents for _, _, cents, _ in result.forks)
    total_merged = sum(cents for _, _, cents, _ in result.merges)
    summary = (
        f'<p class="meta">{len(result.forks)} forks ({_dollars(total_forked)}), '
        f"{len(result.merges)} merges ({_dollars(total_merged)})</p>"
    )
    return f'{summary}\n<ul class="lineage">{tree}</ul>'


# --- formatting -------------------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _dollars(cents: int) -> str:
    """Dollars such as "$1,234,567.89" from integer cents, exact at any size."""
    whole, frac = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    return f"{sign}${whole:,}.{frac:02d}"


def _signed_dollars(cents: int) -> str:
    return f"+{_dollars(cents)}" if cents > 0 else _dollars(cents)


def _change_percent(start_cents: int, end_cents: int) -> str:
    if start_cents == 0:
        return DASH
    return f"{(end_cents - start_cents) / start_cents * 100:+.2f} %"


def _rate(rate: float | None) -> str:
    return DASH if rate is None else f"{rate * 100:.1f} %"


def _tone(value: int) -> str:
    """CSS class for a change, so gains and losses read at a glance."""
    return "pos" if value > 0 else "neg" if value < 0 else ""


# --- text sections ----------------------------------------------------------------------------------------------


def _header(result: RunResult) -> str:
    requests = f"{result.dynamodb_requests:,}"
    if result.account_weeks > 0:
        requests += f" ({result.dynamodb_requests / result.account_weeks:.1f} per account-week)"
    facts = (
        ("Seed", _e(result.seed)),
        ("Weeks", _e(result.weeks)),
        ("Accounts", str(len(result.accounts))),
        ("Account-weeks", str(result.account_weeks)),
        ("Elapsed", f"{result.elapsed_seconds:.1f} s"),
        ("DynamoDB requests", requests),
    )
    items = " · ".join(f"{label}: <strong>{value}</strong>" for label, value in facts)
    return f'<h1>{TITLE}</h1>\n<p class="meta">{items}</p>'


def _aggregates(result: RunResult) -> str:
    weeks = [w for a in result.accounts for w in a.weeks]
    premium = result.premium_cents
    realized = sum(w.realized_cents for w in weeks)
    commissions = sum(w.commission_cents for w in weeks)
    change = result.end_equity_cents - result.start_equity_cents
    hits, judged = result.mode_hits()
    accuracy = f"{hits}/{judged} ({hits / judged * 100:.1f} %)" if judged else f"0/0 ({DASH})"
    type_hits, typed = result.type_hits()
    tax = result.estimated_tax_cents()
    type_accuracy = f"{type_hits}/{typed} ({type_hits / typed * 100:.1f} %)" if typed else f"0/0 ({DASH})"
    rows = (
        ("Start equity", _dollars(result.start_equity_cents), ""),
        ("End equity", _dollars(result.end_equity_cents), ""),
        ("Change", _signed_dollars(change), _tone(change)),
        ("Change %", _change_percent(result.start_equity_cents, result.end_equity_cents), _tone(change)),
        ("Income", _dollars(result.income_cents), _tone(result.income_cents)),
        ("Estimated tax", _dollars(tax), ""),
        ("Income after estimated tax", _signed_dollars(result.income_cents - tax), _tone(result.income_cents - tax)),
        ("Premium", _dollars(premium), ""),
        ("Realized", _signed_dollars(realized), _tone(realized)),
        ("Commissions", _dollars(commissions), ""),
        ("Trades", f"{result.trades:,}", ""),
        ("Win rate (weeks)", _rate(result.win_rate), ""),
        ("Week-mode guess accuracy", accuracy, ""),
        ("Week-type prediction accuracy", type_accuracy, ""),
    )
    lines = "\n".join(f'<tr><th>{k}</th><td class="num {tone}">{v}</td></tr>' for k, v, tone in rows)
    return f'<h2>Aggregate</h2>\n<table class="aggregate">\n{lines}\n</table>'


def _events_table(events: Counter[str]) -> str:
    if not events:
        return '<p class="meta">No protocol events.</p>'
    # Most frequent first; ties by kind so the page is stable between renders.
    ordered = sorted(events.items(), key=lambda item: (-item[1], item[0]))
    lines = "\n".join(f'<tr><td>{_e(kind)}</td><td class="num">{count:,}</td></tr>' for kind, count in ordered)
    return f'<table class="events">\n<tr><th>Event</th><th class="num">Count</th></tr>\n{lines}\n</table>'


def _accounts_table(accounts: Sequence[AccountRun]) -> str:
    if not accounts:
        return '<p class="meta">No accounts.</p>'
    heads = ("Account", "Name", "Start equity", "End equity", "Change %", "Income", "Trades", "Win rate")
    numeric = {"Start equity", "End equity", "Change %", "Income", "Trades", "Win rate"}
    head = "".join(f'<th class="num">{h}</th>' if h in numeric else f"<th>{h}</th>" for h in heads)
    head += "<th>Top week type</th><th>Equity</th><th>Failure</th>"
    rows = "\n".join(_account_row(a) for a in sorted(accounts, key=lambda a: a.account_id))
    return f'<table class="accounts">\n<tr>{head}</tr>\n{rows}\n</table>'


def _account_row(account: AccountRun) -> str:
    change = account.end_equity_cents - account.start_equity_cents
    top = account.week_type_counts().most_common(1)
    top_text = f"{_e(top[0][0])} ({top[0][1]})" if top else DASH
    failure = f'<span class="failure">{_e(account.failure)}</span>' if account.failure else DASH
    cells = (
        f"<td>{_e(account.account_id)}</td>",
        f"<td>{_e(account.name)}</td>",
        f'<td class="num">{_dollars(account.start_equity_cents)}</td>',
        f'<td class="num">{_dollars(account.end_equity_cents)}</td>',
        f'<td class="num {_tone(change)}">{_change_percent(account.start_equity_cents, account.end_equity_cents)}</td>',
        f'<td class="num">{_dollars(account.income_cents)}</td>',
        f'<td class="num">{account.trades:,}</td>',
        f'<td class="num">{_rate(account.win_rate)}</td>',
        f"<td>{top_text}</td>",
        f"<td>{_sparkline([w.equity_cents for w in account.weeks])}</td>",
        f"<td>{failure}</td>",
    )
    return "<tr>" + "".join(cells) + "</tr>"


# --- SVG --------------------------------------------------------------------------------------------------------
# No xmlns attribute: the HTML parser puts <svg> in the SVG namespace by itself, and leaving it out keeps the page
# free of any URL at all.


def _svg_open(css_class: str, width: int, height: int, label: str) -> str:
    return (
        f'<svg class="{css_class}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(label)}">'
    )


def _value_range(values: Sequence[int]) -> tuple[int, int]:
    """Lowest and highest value, widened when all are equal so scaling never divides by zero."""
    low, high = min(values), max(values)
    if low == high:
        pad = max(abs(low) // 20, 100)  # 5 % either side, at least $1
        low, high = low - pad, high + pad
    return low, high


def _label_indices(count: int, most: int = 7) -> list[int]:
    """Evenly spread indices for axis labels, always including the first and last."""
    if count <= most:
        return list(range(count))
    return sorted({round(k * (count - 1) / (most - 1)) for k in range(most)})


def _equity_chart(points: Sequence[tuple[date, int]]) -> str:
    width, height, left, right, top, bottom = 760, 300, 120, 30, 20, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [_svg_open("equity-chart", width, height, "Fleet equity by week")]
    if not points:
        parts.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">No weeks</text></svg>')
        return "".join(parts)
    values = [cents for _, cents in points]
    low, high = _value_range(values)
    count = len(points)

    def x_at(i: int) -> float:
        return left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y_at(cents: int) -> float:
        return top + plot_h * (high - cents) / (high - low)

    for k in range(5):  # horizontal grid lines with dollar labels; integer ticks keep the labels exact
        tick = low + (high - low) * k // 4
        y = y_at(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e4e7eb"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_dollars(tick)}</text>')
    for i in _label_indices(count):
        x = x_at(i)
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 5}" stroke="#9aa5b1"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 20}" font-size="11" text-anchor="middle">'
            f"{points[i][0].isoformat()}</text>"
        )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#9aa5b1"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#9aa5b1"/>'
    )
    coords = " ".join(f"{x_at(i):.1f},{y_at(v):.1f}" for i, v in enumerate(values))
    parts.append(f'<polyline points="{coords}" fill="none" stroke="#2563eb" stroke-width="2"/>')
    if count <= 30:  # markers help with few weeks (one week has no line at all) and clutter with many
        for i, (day, cents) in enumerate(points):
            parts.append(
                f'<circle cx="{x_at(i):.1f}" cy="{y_at(cents):.1f}" r="3" fill="#2563eb">'
                f"<title>{day.isoformat()}: {_dollars(cents)}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _week_type_chart(counts: Counter[str]) -> str:
    # Unknown codes are shown after the fixed ones rather than dropped, so nothing the run reported is hidden.
    codes = [*WEEK_TYPE_CODES, *sorted(set(counts) - set(WEEK_TYPE_CODES))]
    width, height, left, right, top, bottom = 760, 260, 20, 20, 25, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(codes)
    most = max((counts[c] for c in codes), default=0) or 1
    parts = [_svg_open("week-types", width, height, "Week-type counts")]
    base = top + plot_h
    parts.append(f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="#9aa5b1"/>')
    for i, code in enumerate(codes):
        count = counts[code]
        bar_h = plot_h * count / most
        x = left + i * slot
        center = x + slot / 2
        parts.append(
            f'<rect x="{x + slot * 0.15:.1f}" y="{base - bar_h:.1f}" width="{slot * 0.7:.1f}" height="{bar_h:.1f}" '
            f'fill="{_bar_colour(code)}"><title>{_e(code)}: {count}</title></rect>'
        )
        parts.append(
            f'<text x="{center:.1f}" y="{base - bar_h - 5:.1f}" font-size="11" text-anchor="middle">{count}</text>'
        )
        parts.append(
            f'<text class="code" x="{center:.1f}" y="{base + 18}" font-size="11" text-anchor="middle">{_e(code)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _bar_colour(code: str) -> str:
    """Puts (P-), calls (C-) and idle weeks (W-) in different colours."""
    return {"P": "#2563eb", "C": "#d97706", "W": "#9aa5b1"}.get(code[:1], "#7c3aed")


def _sparkline(values: Sequence[int]) -> str:
    if not values:
        return DASH
    width, height, pad = 120, 28, 3
    low, high = _value_range(values)
    count = len(values)

    def point(i: int, cents: int) -> str:
        x = pad + ((width - 2 * pad) * i / (count - 1) if count > 1 else (width - 2 * pad) / 2)
        y = pad + (height - 2 * pad) * (high - cents) / (high - low)
        return f"{x:.1f},{y:.1f}"

    colour = "#0b7a3e" if values[-1] >= values[0] else "#b42318"
    svg = _svg_open("sparkline", width, height, "Weekly equity")
    if count == 1:
        x, y = point(0, values[0]).split(",")
        return f'{svg}<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/></svg>'
    coords = " ".join(point(i, v) for i, v in enumerate(values))
    return f'{svg}<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/></svg>'
