"""CSV bars: the documented format loads; every broken rule is refused with file, line and column."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from alluse.adapters.sim.calendar import NyseCalendar
from alluse.adapters.sim.csv_bars import FORMAT, load_daily_csv, load_directory, load_intraday_csv
from alluse.domain.errors import ValidationFailed

DATA = Path(__file__).parent / "data"
GOOD = (DATA / "AAPL.csv").read_text().splitlines()  # GOOD[0] is line 1 (the header), GOOD[k] is line k + 1
GOOD_INTRADAY = (DATA / "AAPL.intraday.csv").read_text().splitlines()


@pytest.fixture(scope="module")
def cal() -> NyseCalendar:
    return NyseCalendar()


def write(directory: Path, name: str, lines: list[str]) -> Path:
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path


def set_field(lines: list[str], line: int, column: int, value: str) -> list[str]:
    out = list(lines)
    cells = out[line - 1].split(",")
    cells[column] = value
    out[line - 1] = ",".join(cells)
    return out


def problems_of(call: Callable[[], object]) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        call()
    return caught.value.problems


# --- the good file ---------------------------------------------------------------------------------


def test_load_daily(cal: NyseCalendar) -> None:
    bars = load_daily_csv(DATA / "AAPL.csv", cal)
    assert bars.ticker == "AAPL"
    assert len(bars) == 30
    assert bars.dates.dtype == np.dtype("datetime64[D]")
    assert bars.dates[0].item() == date(2024, 11, 11)
    assert bars.dates[-1].item() == date(2024, 12, 23)
    assert np.datetime64("2024-11-28") not in bars.dates
    assert bars.close[-1] == 256.20
    assert bars.volume.dtype == np.int64 and bars.volume[0] == 49_642_800
    assert (bars.high >= np.maximum(bars.open, bars.close)).all()


def test_load_directory_with_intraday_file(cal: NyseCalendar) -> None:
    hist = load_directory(DATA, cal)
    assert hist.tickers == ("AAPL",)
    assert hist.week_regimes() == []
    half = hist.intraday("AAPL", date(2024, 11, 29))  # from AAPL.intraday.csv
    assert len(half) == 14
    assert half.open[0] == 237.09 and half.close[3] == 237.27
    assert str(half.times[1]) == "2024-11-29T09:45"
    assert half.volume.sum() == 28_481_377
    synthetic = hist.intraday("AAPL", date(2024, 11, 27))
    daily = hist.daily("AAPL")
    i = int(np.searchsorted(daily.dates, np.datetime64("2024-11-27")))
    assert len(synthetic) == 26
    assert (synthetic.open[0], synthetic.high.max(), synthetic.low.min(), synthetic.close[-1]) == (
        daily.open[i],
        daily.high[i],
        daily.low[i],
        daily.close[i],
    )
    assert synthetic.volume.sum() == daily.volume[i]


def test_load_directory_without_intraday_file(tmp_path: Path, cal: NyseCalendar) -> None:
    write(tmp_path, "AAPL.csv", GOOD)
    hist = load_directory(tmp_path, cal, interval_minutes=30)
    assert len(hist.intraday("AAPL", date(2024, 11, 29))) == 7
    assert len(hist.intraday("AAPL", date(2024, 12, 2))) == 13


def test_load_intraday_csv(cal: NyseCalendar) -> None:
    daily = load_daily_csv(DATA / "AAPL.csv", cal)
    sessions = load_intraday_csv(DATA / "AAPL.intraday.csv", daily, cal)
    assert [s.session for s in sessions] == [date(2024, 11, 29)]


def test_header_is_lenient_about_case_bom_and_extra_columns(tmp_path: Path, cal: NyseCalendar) -> None:
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for row in GOOD[1:]:
        cells = row.split(",")
        lines.append(",".join([*cells[:5], cells[4], cells[5]]))
    path = tmp_path / "AAPL.csv"
    path.write_text("\ufeff" + "\n".join(lines) + "\n")
    assert len(load_daily_csv(path, cal)) == 30


def test_format_is_documented() -> None:
    assert "date,open,high,low,close,volume" in FORMAT
    assert "datetime,open,high,low,close,volume" in FORMAT
    assert "<TICKER>.intraday.csv" in FORMAT


# --- one broken file per rule ----------------------------------------------------------------------


def _swap(a: int, b: int) -> Callable[[list[str]], list[str]]:
    def change(lines: list[str]) -> list[str]:
        out = list(lines)
        out[a - 1], out[b - 1] = out[b - 1], out[a - 1]
        return out

    return change


def _copy(src: int, dst: int) -> Callable[[list[str]], list[str]]:
    def change(lines: list[str]) -> list[str]:
        out = list(lines)
        out[dst - 1] = out[src - 1]
        return out

    return change


BROKEN: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "missing column": (
        lambda lines: ["date,open,high,low,close", *lines[1:]],
        "AAPL.csv: line 1: header: missing column(s) volume",
    ),
    "unsorted dates": (_swap(5, 6), "AAPL.csv: line 6: date: 2024-11-14 is before 2024-11-15 on line 5"),
    "duplicated date": (_copy(5, 6), "AAPL.csv: line 6: date: 2024-11-14 duplicates line 5"),
    "non-numeric value": (
        lambda lines: set_field(lines, 3, 4, "abc"),
        "AAPL.csv: line 3: close: 'abc' is not a number",
    ),
    "not-a-number text": (lambda lines: set_field(lines, 3, 1, "nan"), "AAPL.csv: line 3: open: 'nan' is not a number"),
    "high below low": (
        lambda lines: set_field(set_field(lines, 4, 2, "220.90"), 4, 3, "228.36"),
        "AAPL.csv: line 4: high: high 220.9 is below low 228.36",
    ),
    "close above high": (
        lambda lines: set_field(lines, 7, 4, "300.00"),
        "AAPL.csv: line 7: close: close 300.0 is outside [low 226.94, high 230.07]",
    ),
    "open below low": (lambda lines: set_field(lines, 7, 1, "200"), "AAPL.csv: line 7: open: open 200.0 is outside"),
    "zero price": (lambda lines: set_field(lines, 8, 3, "0"), "AAPL.csv: line 8: low: 0 is not a positive price"),
    "negative price": (lambda lines: set_field(lines, 8, 3, "-1.5"), "AAPL.csv: line 8: low: -1.5 is not a positive"),
    "negative volume": (lambda lines: set_field(lines, 9, 5, "-5"), "AAPL.csv: line 9: volume: -5 is negative"),
    "fractional volume": (
        lambda lines: set_field(lines, 9, 5, "12.5"),
        "AAPL.csv: line 9: volume: 12.5 is not a whole number",
    ),
    "holiday": (
        lambda lines: set_field(lines, 15, 0, "2024-11-28"),
        "AAPL.csv: line 15: date: 2024-11-28 (Thursday) is not an NYSE session",
    ),
    "weekend": (
        lambda lines: set_field(lines, 7, 0, "2024-11-16"),
        "AAPL.csv: line 7: date: 2024-11-16 (Saturday) is not an NYSE session",
    ),
    "not an ISO date": (
        lambda lines: set_field(lines, 2, 0, "11/11/2024"),
        "AAPL.csv: line 2: date: '11/11/2024' is not an ISO date",
    ),
    "impossible date": (
        lambda lines: set_field(lines, 2, 0, "2024-02-30"),
        "AAPL.csv: line 2: date: '2024-02-30' is not a valid date",
    ),
    "wrong field count": (lambda lines: [*lines[:3], lines[3] + ",1", *lines[4:]], "AAPL.csv: line 4: row:"),
    "outside the calendar": (
        lambda lines: [lines[0], "1999-12-31,1,1,1,1,1", *lines[1:]],
        "AAPL.csv: line 2: date: 1999-12-31 is outside the trading calendar",
    ),
    "empty": (lambda lines: [], "AAPL.csv: line 1: header: the file is empty"),
    "header only": (lambda lines: lines[:1], "AAPL.csv: line 2: row: no data rows"),
}


@pytest.mark.parametrize("rule", list(BROKEN))
def test_broken_daily_file_is_refused(tmp_path: Path, cal: NyseCalendar, rule: str) -> None:
    change, expected = BROKEN[rule]
    path = write(tmp_path, "AAPL.csv", change(GOOD))
    problems = problems_of(lambda: load_daily_csv(path, cal))
    assert any(p.startswith(expected) for p in problems), problems
    problems_dir = problems_of(lambda: load_directory(tmp_path, cal))
    assert any(p.startswith(expected) for p in problems_dir), problems_dir


def test_every_problem_of_a_file_is_listed(tmp_path: Path, cal: NyseCalendar) -> None:
    lines = set_field(set_field(set_field(GOOD, 3, 4, "x"), 9, 5, "-1"), 15, 0, "2024-11-28")
    path = write(tmp_path, "AAPL.csv", lines)
    with pytest.raises(ValidationFailed) as caught:
        load_daily_csv(path, cal)
    err = caught.value
    assert [p.split(": ")[1] for p in err.problems] == ["line 3", "line 9", "line 15"]
    assert str(err).startswith("AAPL.csv: 3 problem(s), nothing loaded; first: AAPL.csv: line 3: close")


def test_problems_are_capped_per_file(tmp_path: Path, cal: NyseCalendar) -> None:
    lines = list(GOOD)
    for line in range(2, 32):
        lines = set_field(lines, line, 5, "-1")
    problems = problems_of(lambda: load_daily_csv(write(tmp_path, "AAPL.csv", lines), cal))
    assert len(problems) == 21
    assert problems[-1] == "AAPL.csv: … and 10 more problem(s)"


def test_nothing_is_loaded_when_one_file_is_broken(tmp_path: Path, cal: NyseCalendar) -> None:
    write(tmp_path, "AAPL.csv", GOOD)
    write(tmp_path, "MSFT.csv", set_field([line for line in GOOD], 5, 2, "1"))
    write(tmp_path, "NVDA.csv", set_field(GOOD, 6, 5, "-3"))
    problems = problems_of(lambda: load_directory(tmp_path, cal))
    assert {p.split(":")[0] for p in problems} == {"MSFT.csv", "NVDA.csv"}


def test_bad_file_names(tmp_path: Path, cal: NyseCalendar) -> None:
    write(tmp_path, "aapl.csv", GOOD)
    write(tmp_path, "TSLA.intraday.csv", GOOD_INTRADAY)
    problems = problems_of(lambda: load_directory(tmp_path, cal))
    assert "aapl.csv: file name: 'aapl' is not a ticker" in problems[0]
    assert any(p.startswith("TSLA.intraday.csv: file name: no daily file TSLA.csv") for p in problems)


def test_directory_must_hold_daily_files(tmp_path: Path, cal: NyseCalendar) -> None:
    with pytest.raises(ValidationFailed, match=r"no <TICKER>\.csv"):
        load_directory(tmp_path, cal)
    with pytest.raises(ValidationFailed, match="not a directory"):
        load_directory(tmp_path / "missing", cal)


INTRADAY_BROKEN: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "after the close": (
        lambda lines: [*lines, "2024-11-29 13:00,237.09,237.10,237.00,237.05,100"],
        "AAPL.intraday.csv: line 16: datetime: 13:00 is outside the session's hours 09:30-13:00 ET",
    ),
    "before the open": (
        lambda lines: [lines[0], "2024-11-27 09:15,235.0,235.1,234.9,235.0,100", *lines[1:]],
        "AAPL.intraday.csv: line 2: datetime: 09:15 is outside the session's hours 09:30-16:00 ET",
    ),
    "holiday": (
        lambda lines: [lines[0], "2024-11-28 10:00,235.0,235.1,234.9,235.0,100", *lines[1:]],
        "AAPL.intraday.csv: line 2: datetime: 2024-11-28 (Thursday) is not an NYSE session",
    ),
    "session without daily row": (
        lambda lines: [*lines, "2024-12-30 10:00,250.0,250.1,249.9,250.0,100"],
        "AAPL.intraday.csv: line 16: datetime: 2024-12-30 has no row in the daily file",
    ),
    "unsorted": (_swap(3, 4), "AAPL.intraday.csv: line 4: datetime: 2024-11-29 09:45 is before"),
    "bad datetime": (
        lambda lines: set_field(lines, 2, 0, "2024-11-29T9:30"),
        "AAPL.intraday.csv: line 2: datetime: '2024-11-29T9:30' is not YYYY-MM-DD HH:MM",
    ),
    "high below low": (
        lambda lines: set_field(lines, 5, 2, "200"),
        "AAPL.intraday.csv: line 5: high: high 200.0 is below low",
    ),
    "missing column": (lambda lines: ["datetime,open,high,low,close", *lines[1:]], "AAPL.intraday.csv: line 1: header"),
}


@pytest.mark.parametrize("rule", list(INTRADAY_BROKEN))
def test_broken_intraday_file_is_refused(tmp_path: Path, cal: NyseCalendar, rule: str) -> None:
    change, expected = INTRADAY_BROKEN[rule]
    write(tmp_path, "AAPL.csv", GOOD)
    write(tmp_path, "AAPL.intraday.csv", change(GOOD_INTRADAY))
    problems = problems_of(lambda: load_directory(tmp_path, cal))
    assert any(p.startswith(expected) for p in problems), problems
