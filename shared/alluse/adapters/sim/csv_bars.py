"""Real bars from CSV files, for running the simulated world on recorded prices.

Format (also in `FORMAT`, which the README quotes):

    <dir>/<TICKER>.csv            daily bars, required, one file per ticker
        date,open,high,low,close,volume
        2026-11-27,229.10,231.00,228.55,230.40,18934512

    <dir>/<TICKER>.intraday.csv   intraday bars, optional
        datetime,open,high,low,close,volume
        2026-11-27 09:30,229.10,229.80,228.90,229.60,1203344

- UTF-8, comma separated, one header line; column names are case-insensitive, extra columns are ignored.
- `date` is ISO `YYYY-MM-DD` and must be an NYSE session; rows sorted by date, no duplicates.
- `datetime` is the bar's start, America/New_York wall clock `YYYY-MM-DD HH:MM`, inside the session
  [open, close) of a date that has a daily bar; rows sorted, no duplicates. Intraday bars are not
  cross-checked against the daily bar (vendors' daily and intraday feeds differ slightly).
- Prices are positive decimals in USD (kept as given); low ≤ open, close ≤ high. Volume is a whole
  number ≥ 0.
- Sessions with no intraday rows (or tickers with no intraday file) get a synthetic intraday path
  (`intraday_from_daily`).

Errors: nothing is loaded if any file breaks a rule. `ValidationFailed.problems` lists every problem
(up to 20 per file) as "<file>: line <n>: <column>: <what is wrong>", where <n> is the line number in
the file (the header is line 1, the first data row line 2).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Final, TypeVar

import numpy as np

from alluse.adapters.sim.bars import IntradayTable, SimulatedHistory, intraday_table_from_daily
from alluse.adapters.sim.calendar import NyseCalendar
from alluse.application.market_ports import TradingCalendar
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.market import DailyBars, FloatArray, IntArray, IntradayBars

__all__ = [
    "DAILY_COLUMNS",
    "FORMAT",
    "INTRADAY_COLUMNS",
    "MAX_PROBLEMS_PER_FILE",
    "load_daily_csv",
    "load_directory",
    "load_intraday_csv",
]

FORMAT: Final = """\
One file per ticker in a directory: <TICKER>.csv (daily bars, required) and optionally
<TICKER>.intraday.csv (intraday bars). UTF-8, comma separated, one header line (case-insensitive,
extra columns ignored).
  <TICKER>.csv           date,open,high,low,close,volume
                         2026-11-27,229.10,231.00,228.55,230.40,18934512
  <TICKER>.intraday.csv  datetime,open,high,low,close,volume
                         2026-11-27 09:30,229.10,229.80,228.90,229.60,1203344
date: ISO YYYY-MM-DD, an NYSE session. datetime: bar start, America/New_York wall clock YYYY-MM-DD HH:MM,
within the session's opening hours, on a date that has a daily bar. Rows sorted, no duplicates.
Prices: positive USD decimals with low <= open, close <= high. Volume: whole number >= 0.
Sessions without intraday rows get a synthetic path: open -> low -> high -> close (up day) or
open -> high -> low -> close (down day), piecewise-linear over the session's bars.
A file that breaks any rule is refused with every problem as "<file>: line <n>: <column>: <problem>"
(n = line number in the file, header = line 1); nothing is loaded.
"""

DAILY_COLUMNS: Final = ("date", "open", "high", "low", "close", "volume")
INTRADAY_COLUMNS: Final = ("datetime", "open", "high", "low", "close", "volume")
MAX_PROBLEMS_PER_FILE: Final = 20
DAILY_SUFFIX: Final = ".csv"
INTRADAY_SUFFIX: Final = ".intraday.csv"

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}")
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TICKER_RE = re.compile(r"[A-Z][A-Z./]{0,5}")
_PRICES = ("open", "high", "low", "close")
_Stamp = TypeVar("_Stamp", date, datetime)


@dataclass
class _Problems:
    file: str
    items: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, line: int | None, column: str, text: str) -> None:
        """Record a problem; `line` None for the file as a whole (its name)."""
        self.total += 1
        if len(self.items) < MAX_PROBLEMS_PER_FILE:
            where = f"line {line}: " if line is not None else ""
            self.items.append(f"{self.file}: {where}{column}: {text}")

    def listed(self) -> list[str]:
        more = self.total - len(self.items)
        return self.items + ([f"{self.file}: … and {more} more problem(s)"] if more > 0 else [])

    def __bool__(self) -> bool:
        return self.total > 0


def _raise(problems: list[str], total: int, where: str) -> None:
    first = problems[0]
    raise ValidationFailed(
        f"{where}: {total} problem(s), nothing loaded; first: {first}", field=where, problems=problems
    )


@dataclass(frozen=True)
class _Row:
    line: int
    key: str  # the date / datetime text
    values: dict[str, str]


def _rows(path: Path, columns: tuple[str, ...], problems: _Problems) -> Iterator[_Row]:
    """Rows of a CSV file with the required columns; header problems are reported at line 1."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(1, "file", f"cannot be read ({exc.__class__.__name__}: {exc})")
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        problems.add(1, "header", f"the file is empty; expected the header {','.join(columns)}")
        return
    names = [h.strip().lower() for h in header]
    missing = [c for c in columns if c not in names]
    duplicated = sorted({c for c in columns if names.count(c) > 1})
    if missing:
        problems.add(1, "header", f"missing column(s) {', '.join(missing)} (header is {','.join(header)})")
    if duplicated:
        problems.add(1, "header", f"column(s) {', '.join(duplicated)} appear more than once")
    if missing or duplicated:
        return
    index = {c: names.index(c) for c in columns}
    seen_rows = False
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        seen_rows = True
        if len(row) != len(header):
            problems.add(line, "row", f"expected {len(header)} fields, got {len(row)}")
            continue
        values = {c: row[i].strip() for c, i in index.items()}
        yield _Row(line, values[columns[0]], values)
    if not seen_rows:
        problems.add(2, "row", "no data rows after the header")


def _number(row: _Row, column: str, problems: _Problems) -> float | None:
    text = row.values[column]
    if not _NUMBER_RE.fullmatch(text):
        problems.add(row.line, column, f"{text!r} is not a number")
        return None
    return float(text)


def _bar_values(row: _Row, problems: _Problems) -> tuple[float, float, float, float, int] | None:
    """Validated (open, high, low, close, volume) of a row, or None after reporting its problems."""
    ok = True
    prices: dict[str, float] = {}
    for column in _PRICES:
        value = _number(row, column, problems)
        if value is None:
            ok = False
        elif not value > 0:
            problems.add(row.line, column, f"{row.values[column]} is not a positive price")
            ok = False
        else:
            prices[column] = value
    if len(prices) == 4:
        o, h, lo, c = prices["open"], prices["high"], prices["low"], prices["close"]
        if h < lo:
            problems.add(row.line, "high", f"high {h} is below low {lo}")
            ok = False
        else:
            for column, value in (("open", o), ("close", c)):
                if not lo <= value <= h:
                    problems.add(row.line, column, f"{column} {value} is outside [low {lo}, high {h}]")
                    ok = False
    volume_text = row.values["volume"]
    volume = _number(row, "volume", problems)
    if volume is None:
        ok = False
    elif volume != int(volume):
        problems.add(row.line, "volume", f"{volume_text} is not a whole number")
        ok = False
    elif volume < 0:
        problems.add(row.line, "volume", f"{volume_text} is negative")
        ok = False
    if not ok or volume is None:
        return None
    return prices["open"], prices["high"], prices["low"], prices["close"], int(volume)


def _order(row: _Row, stamp: _Stamp, previous: tuple[int, _Stamp] | None, column: str, problems: _Problems) -> bool:
    if previous is None:
        return True
    prev_line, prev = previous
    if stamp == prev:
        problems.add(row.line, column, f"{row.key} duplicates line {prev_line}")
        return False
    if stamp < prev:
        problems.add(row.line, column, f"{row.key} is before {prev} on line {prev_line}: rows must be sorted")
        return False
    return True


def _session_problem(calendar: TradingCalendar, day: date) -> str | None:
    try:
        if calendar.is_session(day):
            return None
    except MarketDataGap as exc:
        return f"{day} is outside the trading calendar ({exc.message})"
    return f"{day} ({day:%A}) is not an NYSE session"


@dataclass
class _Columns:
    open: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    volume: list[int] = field(default_factory=list)

    def append(self, values: tuple[float, float, float, float, int]) -> None:
        o, h, lo, c, v = values
        self.open.append(o)
        self.high.append(h)
        self.low.append(lo)
        self.close.append(c)
        self.volume.append(v)

    def arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, IntArray]:
        return (
            np.array(self.open, dtype=np.float64),
            np.array(self.high, dtype=np.float64),
            np.array(self.low, dtype=np.float64),
            np.array(self.close, dtype=np.float64),
            np.array(self.volume, dtype=np.int64),
        )


def _ticker_of(path: Path, suffix: str, problems: _Problems) -> str:
    ticker = path.name[: -len(suffix)] if path.name.endswith(suffix) else path.stem
    if not _TICKER_RE.fullmatch(ticker):
        problems.add(None, "file name", f"{ticker!r} is not a ticker (1-6 upper-case A-Z, '.', '/', e.g. AAPL.csv)")
    return ticker


def _parse_daily(path: Path, calendar: TradingCalendar, problems: _Problems) -> DailyBars | None:
    ticker = _ticker_of(path, DAILY_SUFFIX, problems)
    dates: list[date] = []
    cols = _Columns()
    previous: tuple[int, date] | None = None
    for row in _rows(path, DAILY_COLUMNS, problems):
        day: date | None = None
        if not _DATE_RE.fullmatch(row.key):
            problems.add(row.line, "date", f"{row.key!r} is not an ISO date YYYY-MM-DD")
        else:
            try:
                day = date.fromisoformat(row.key)
            except ValueError:
                problems.add(row.line, "date", f"{row.key!r} is not a valid date")
        ordered = True
        if day is not None:
            ordered = _order(row, day, previous, "date", problems)
            previous = (row.line, day) if ordered else previous
            problem = _session_problem(calendar, day)
            if problem:
                problems.add(row.line, "date", problem)
                day = None
        values = _bar_values(row, problems)
        if day is not None and ordered and values is not None:
            dates.append(day)
            cols.append(values)
    if problems:
        return None
    o, h, lo, c, v = cols.arrays()
    bars = DailyBars(ticker, np.array([d.isoformat() for d in dates], dtype="datetime64[D]"), o, h, lo, c, v)
    for arr in (bars.dates, bars.open, bars.high, bars.low, bars.close, bars.volume):
        arr.setflags(write=False)
    return bars


def _parse_intraday(
    path: Path, daily: DailyBars, calendar: TradingCalendar, problems: _Problems
) -> dict[date, IntradayBars] | None:
    known = {d.item() for d in daily.dates}
    stamps: list[datetime] = []
    cols = _Columns()
    previous: tuple[int, datetime] | None = None
    hours: dict[date, tuple[datetime, datetime]] = {}
    for row in _rows(path, INTRADAY_COLUMNS, problems):
        at: datetime | None = None
        if not _DATETIME_RE.fullmatch(row.key):
            problems.add(row.line, "datetime", f"{row.key!r} is not YYYY-MM-DD HH:MM")
        else:
            try:
                at = datetime.fromisoformat(row.key.replace("T", " "))
            except ValueError:
                problems.add(row.line, "datetime", f"{row.key!r} is not a valid date and time")
        ordered = True
        if at is not None:
            ordered = _order(row, at, previous, "datetime", problems)
            previous = (row.line, at) if ordered else previous
            at = _in_session(row, at, known, hours, calendar, problems)
        values = _bar_values(row, problems)
        if at is not None and ordered and values is not None:
            stamps.append(at)
            cols.append(values)
    if problems:
        return None
    o, h, lo, c, v = cols.arrays()
    times = np.array([s.isoformat(timespec="minutes") for s in stamps], dtype="datetime64[m]")
    days = np.array([s.date().isoformat() for s in stamps], dtype="datetime64[D]")
    result: dict[date, IntradayBars] = {}
    for day in np.unique(days):
        rows = np.flatnonzero(days == day)
        lo_i, hi_i = int(rows[0]), int(rows[-1]) + 1
        session = day.item()
        result[session] = IntradayBars(
            daily.ticker,
            session,
            times[lo_i:hi_i],
            o[lo_i:hi_i],
            h[lo_i:hi_i],
            lo[lo_i:hi_i],
            c[lo_i:hi_i],
            v[lo_i:hi_i],
        )
    return result


def _in_session(
    row: _Row,
    at: datetime,
    known: set[date],
    hours: dict[date, tuple[datetime, datetime]],
    calendar: TradingCalendar,
    problems: _Problems,
) -> datetime | None:
    day = at.date()
    if day not in known:
        reason = _session_problem(calendar, day) or f"{day} has no row in the daily file"
        problems.add(row.line, "datetime", reason)
        return None
    if day not in hours:
        hours[day] = (
            calendar.open_at(day).replace(tzinfo=None),
            calendar.close_at(day).replace(tzinfo=None),
        )
    opens, closes = hours[day]
    if not opens <= at < closes:
        problems.add(row.line, "datetime", f"{at:%H:%M} is outside the session's hours {opens:%H:%M}-{closes:%H:%M} ET")
        return None
    return at


def _calendar(calendar: TradingCalendar | None) -> TradingCalendar:
    return calendar if calendar is not None else NyseCalendar()


def _checked(parse: Callable[[_Problems], object], path: Path) -> object:
    problems = _Problems(path.name)
    result = parse(problems)
    if problems:
        _raise(problems.listed(), problems.total, path.name)
    return result


def load_daily_csv(path: str | Path, calendar: TradingCalendar | None = None) -> DailyBars:
    """Daily bars of `<TICKER>.csv` (the ticker is the file name); ValidationFailed lists every problem."""
    p = Path(path)
    cal = _calendar(calendar)
    bars = _checked(lambda problems: _parse_daily(p, cal, problems), p)
    assert isinstance(bars, DailyBars)
    return bars


def load_intraday_csv(
    path: str | Path, daily: DailyBars, calendar: TradingCalendar | None = None
) -> list[IntradayBars]:
    """Intraday bars of `<TICKER>.intraday.csv`, one entry per session present, checked against `daily`'s
    sessions; ValidationFailed lists every problem."""
    p = Path(path)
    cal = _calendar(calendar)
    sessions = _checked(lambda problems: _parse_intraday(p, daily, cal, problems), p)
    assert isinstance(sessions, dict)
    return [sessions[d] for d in sorted(sessions)]


def load_directory(
    directory: str | Path, calendar: TradingCalendar | None = None, *, interval_minutes: int = 15
) -> SimulatedHistory:
    """Every `<TICKER>.csv` (and `<TICKER>.intraday.csv`) of `directory` as a SimulatedHistory.

    Sessions without intraday rows get `intraday_from_daily` bars of `interval_minutes`; loaded intraday
    bars keep their own spacing. The result has no week regimes. All files are
    checked before anything is returned; ValidationFailed lists the problems of every file (≤ 20 each).
    """
    root = Path(directory)
    if not root.is_dir():
        raise ValidationFailed(f"{root} is not a directory", field="directory")
    cal = _calendar(calendar)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(DAILY_SUFFIX))
    intraday_files = {p.name[: -len(INTRADAY_SUFFIX)]: p for p in files if p.name.endswith(INTRADAY_SUFFIX)}
    daily_files = [p for p in files if not p.name.endswith(INTRADAY_SUFFIX)]
    if not daily_files:
        raise ValidationFailed(f"{root} has no <TICKER>.csv files", field="directory")

    listed: list[str] = []
    total = 0
    daily: dict[str, DailyBars] = {}
    loaded: dict[str, dict[date, IntradayBars]] = {}
    for path in daily_files:
        problems = _Problems(path.name)
        bars = _parse_daily(path, cal, problems)
        if bars is not None:
            daily[bars.ticker] = bars
            extra = intraday_files.pop(bars.ticker, None)
            if extra is not None:
                intraday_problems = _Problems(extra.name)
                sessions = _parse_intraday(extra, bars, cal, intraday_problems)
                listed += intraday_problems.listed()
                total += intraday_problems.total
                loaded[bars.ticker] = sessions or {}
        else:
            intraday_files.pop(path.name[: -len(DAILY_SUFFIX)], None)
        listed += problems.listed()
        total += problems.total
    for ticker, path in sorted(intraday_files.items()):
        listed.append(f"{path.name}: file name: no daily file {ticker}{DAILY_SUFFIX} beside it")
        total += 1
    if total:
        _raise(listed, total, root.name or str(root))

    tables: dict[str, IntradayTable] = {}
    for ticker, bars in daily.items():
        synthetic = intraday_table_from_daily(bars, cal, interval_minutes)
        real = loaded.get(ticker)
        if not real:
            tables[ticker] = synthetic
            continue
        merged = [real.get(d.item()) or synthetic.session(ticker, i, d.item()) for i, d in enumerate(bars.dates)]
        tables[ticker] = IntradayTable.from_sessions(merged)
    return SimulatedHistory(daily, tables, interval_minutes=interval_minutes)
