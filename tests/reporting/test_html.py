"""The HTML run report: self-contained, exact money text, escaped input, well-formed SVG, and edge cases."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import date, timedelta

import pytest

from alluse.application.run_results import AccountRun, AccountWeek, RunResult
from alluse.reporting.html import WEEK_TYPE_CODES, _dollars, render_html

MONDAY = date(2024, 1, 8)
EVIL_NAME = "<script>alert('x')</script>"
FAILURE = "broker timeout <ERR> & retry"


def week(
    account_id: str,
    index: int,
    equity_cents: int,
    week_types: dict[str, str],
    guessed: str | None = None,
    confirmed: str | None = None,
) -> AccountWeek:
    # Every week earns the same: realized $250.00 − commission $12.34 = $237.66 (premium $1,000.00 is shown apart).
    return AccountWeek(
        account_id=account_id,
        week_start=MONDAY + timedelta(weeks=index),
        equity_cents=equity_cents,
        premium_cents=1_000_00,
        realized_cents=250_00,
        commission_cents=12_34,
        trades=2,
        mode_guessed=guessed,
        mode_confirmed=confirmed,
        week_types=week_types,
    )


def make_result() -> RunResult:
    alpha = AccountRun(
        "A1",
        "Alpha",
        500_000_00,
        (
            week("A1", 0, 505_000_00, {"GEN": "P-EW", "REV": "C-WAP"}, "GREEN", "GREEN"),
            week("A1", 1, 503_000_00, {"GEN": "P-EW", "REV": "C-WAP"}, "RED", "GREEN"),
            week("A1", 2, 510_000_00, {"GEN": "P-EW", "REV": "C-WAP"}),
        ),
    )
    evil = AccountRun(
        "A2",
        EVIL_NAME,
        300_000_00,
        (
            week("A2", 0, 301_000_00, {"GEN": "P-EW"}, "GREEN", "GREEN"),
            week("A2", 1, 299_000_00, {"GEN": "P-RO"}, "CHOP", "CHOP"),
            week("A2", 2, 298_765_43, {"GEN": "W-IDL"}, "GREEN", None),
        ),
    )
    failed = AccountRun("A3", "Gamma", 200_000_00, (week("A3", 0, 201_234_57, {"COM": "C-REC"}),), failure=FAILURE)
    return RunResult(
        seed=42,
        weeks=3,
        accounts=(failed, alpha, evil),  # out of order on purpose: the table sorts by id
        elapsed_seconds=12.345,
        dynamodb_requests=1_400,
        protocol_events=Counter({"denial: cap": 5, "alert <b>": 2, "problem": 7}),
    )


def svg_fragments(page: str) -> list[ET.Element]:
    return [ET.fromstring(fragment) for fragment in re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)]


def svg_by_class(page: str, css_class: str) -> list[ET.Element]:
    return [svg for svg in svg_fragments(page) if svg.get("class") == css_class]


@pytest.fixture
def page() -> str:
    return render_html(make_result())


def test_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    for external in ("http://", "https://", "<script", "<link", "<img", "@import", "url(", "<iframe"):
        assert external not in page


def test_header(page: str) -> None:
    assert "<title>ALL-USE protocol run</title>" in page
    assert "Seed: <strong>42</strong>" in page
    assert "Weeks: <strong>3</strong>" in page
    assert "Accounts: <strong>3</strong>" in page
    assert "Account-weeks: <strong>7</strong>" in page
    assert "Elapsed: <strong>12.3 s</strong>" in page
    assert "1,400 (200.0 per account-week)" in page


def test_aggregate_figures_are_exact(page: str) -> None:
    aggregate = page[page.index('<table class="aggregate">') : page.index("</table>")]
    assert ">$1,000,000.00<" in aggregate  # start
    assert ">$1,010,000.00<" in aggregate  # end: 510,000.00 + 298,765.43 + 201,234.57
    assert ">+$10,000.00<" in aggregate
    assert ">+1.00 %<" in aggregate
    assert ">$1,663.62<" in aggregate  # income: 7 weeks × $237.66
    assert ">$7,000.00<" in aggregate  # premium
    assert ">$86.38<" in aggregate  # commissions
    assert ">14<" in aggregate  # trades
    assert ">57.1 %<" in aggregate  # 4 winning weeks of 7
    assert ">3/4 (75.0 %)<" in aggregate


def test_equity_chart_plots_fleet_equity_per_week(page: str) -> None:
    (chart,) = svg_by_class(page, "equity-chart")
    titles = [t.text for t in chart.iter("title")]
    assert titles == [
        "2024-01-08: $1,007,234.57",
        "2024-01-15: $802,000.00",  # A3 stopped after its first week
        "2024-01-22: $808,765.43",
    ]
    labels = [t.text or "" for t in chart.iter("text")]
    assert "2024-01-08" in labels and "2024-01-22" in labels
    assert "$802,000.00" in labels and "$1,007,234.57" in labels  # lowest and highest y ticks


def test_week_type_chart_has_all_codes_in_order(page: str) -> None:
    (chart,) = svg_by_class(page, "week-types")
    codes = [t.text for t in chart.iter("text") if t.get("class") == "code"]
    assert codes == list(WEEK_TYPE_CODES)
    assert len(WEEK_TYPE_CODES) == 11
    bars = [t.text for t in chart.iter("title")]
    assert bars == [
        "P-EW: 4",
        "P-AWL: 0",
        "P-RO: 1",
        "P-AOL: 0",
        "P-DD: 0",
        "C-WAP: 3",
        "C-WAP+: 0",
        "C-PNO: 0",
        "C-RO: 0",
        "C-REC: 1",
        "W-IDL: 1",
    ]


def test_input_strings_are_escaped(page: str) -> None:
    assert EVIL_NAME not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert FAILURE not in page
    assert "broker timeout &lt;ERR&gt; &amp; retry" in page
    assert "alert <b>" not in page
    assert "alert &lt;b&gt;" in page


def test_events_sorted_by_count_descending(page: str) -> None:
    events = page[page.index('<table class="events">') :]
    positions = [events.index(kind) for kind in ("problem", "denial: cap", "alert &lt;b&gt;")]
    assert positions == sorted(positions)
    assert '<td>problem</td><td class="num">7</td>' in events


def test_accounts_table_sorted_with_sparklines(page: str) -> None:
    table = page[page.index('<table class="accounts">') :]
    rows = re.findall(r"<tr><td>(A\d)</td>", table)
    assert rows == ["A1", "A2", "A3"]
    a3 = table[table.index("<td>A3</td>") :]
    assert "<td>Gamma</td>" in a3 and ">$201,234.57<" in a3 and ">+0.62 %<" in a3 and "C-REC (1)" in a3
    assert len(svg_by_class(page, "sparkline")) == 3


def test_all_svgs_are_well_formed(page: str) -> None:
    svgs = svg_fragments(page)
    assert len(svgs) == 5  # equity chart, week-type chart, 3 sparklines
    assert all(svg.tag == "svg" for svg in svgs)
    assert page.count("<svg") == 5


def test_zero_accounts() -> None:
    page = render_html(RunResult(seed=1, weeks=0, accounts=()))
    assert "Accounts: <strong>0</strong>" in page
    assert "per account-week" not in page
    assert ">$0.00<" in page
    assert ">0/0 (—)<" in page
    assert "No weeks" in page and "No accounts." in page and "No protocol events." in page
    assert len(svg_fragments(page)) == 2
    assert all(code in page for code in WEEK_TYPE_CODES)


def test_account_without_weeks() -> None:
    idle = AccountRun("B1", "Idle", 250_000_00, ())
    page = render_html(RunResult(seed=2, weeks=0, accounts=(idle,)))
    row = page[page.index("<td>B1</td>") :]
    assert row.count(">$250,000.00<") == 2  # end equity falls back to the start
    assert ">+0.00 %<" in row
    assert not svg_by_class(page, "sparkline")


@pytest.mark.parametrize("equities", [[1_000_000_00], [1_000_000_00, 1_000_000_00, 1_000_000_00], [0, 0]])
def test_single_week_and_flat_equity(equities: list[int]) -> None:
    account = AccountRun(
        "C1", "Flat", 1_000_000_00, tuple(week("C1", i, cents, {"GEN": "P-EW"}) for i, cents in enumerate(equities))
    )
    page = render_html(RunResult(seed=3, weeks=len(equities), accounts=(account,)))
    svgs = svg_fragments(page)
    assert len(svgs) == 3
    assert not re.search(r"\b(nan|inf)\b", page, flags=re.IGNORECASE)
    (chart,) = svg_by_class(page, "equity-chart")
    assert len(list(chart.iter("circle"))) == len(equities)


def test_dollars_from_cents_exactly() -> None:
    assert _dollars(0) == "$0.00"
    assert _dollars(5) == "$0.05"
    assert _dollars(123_456_789) == "$1,234,567.89"
    assert _dollars(-123_456) == "-$1,234.56"
    assert _dollars(12_345_678_901_234_567_891) == "$123,456,789,012,345,678.91"  # beyond float precision
