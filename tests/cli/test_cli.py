"""The `alluse` command through its installed entry point, state persisted between invocations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ALLUSE = str(Path(sys.executable).parent / "alluse")


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home

    def __call__(self, *args: str) -> Result:
        env = {**os.environ, "ALLUSE_HOME": str(self.home), "ALLUSE_ACTOR": "tester", "COLUMNS": "200"}
        done = subprocess.run([ALLUSE, *args], capture_output=True, text=True, env=env, timeout=120)
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.code == 0, result.err
        return result.out

    def refused(self, *args: str, says: str) -> str:
        result = self(*args)
        assert result.code == 1, (result.out, result.err)
        assert "Traceback" not in result.err + result.out
        assert says in result.err, result.err
        return result.err

    def snapshot(self) -> str:
        return (self.home / "dynamodb.jsonl").read_text()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "state")


def test_account_lifecycle_persists_between_invocations(cli: Cli) -> None:
    created = cli.ok("accounts", "create", "--capital", "500000", "--name", "Alpha")
    assert "ACC-00001" in created and "PENDING_BROKER_LINK" in created
    assert "$200,000.00" in created and "$10,000.00" in created  # Gen-Acc 40 % and its 5 % buffer
    assert "DU1234567" in cli.ok("accounts", "link-broker", "ACC-00001", "DU1234567")
    cli.ok("accounts", "deposit", "ACC-00001", "100000", "--reason", "top-up")
    cli.ok("accounts", "withdraw", "ACC-00001", "1000.50")
    shown = cli.ok("accounts", "show", "ACC-00001")
    assert "ACTIVE" in shown and "$598,999.50" in shown and "top-up" in shown
    listed = cli.ok("accounts", "list")
    assert "ACC-00001" in listed and "Fleet allocation" in listed
    verified = cli.ok("audit", "verify")
    assert "ACC-00001" in verified and "intact" in verified and "broken" not in verified
    trail = cli.ok("audit", "show", "ACC-00001")
    for action in ("ACCOUNT_CREATED", "ACCOUNT_FUNDED", "BROKER_LINKED", "STATUS_CHANGED", "ACCOUNT_WITHDRAWAL"):
        assert action in trail


def test_config_set_show_and_history(cli: Cli) -> None:
    cli.ok("accounts", "create", "--capital", "250000")
    cli.ok("config", "set", "gen.delta_band.min=0.42", "--account", "ACC-00001", "--reason", "narrower band")
    shown = cli.ok("config", "show", "--account", "ACC-00001")
    row = next(line for line in shown.splitlines() if "gen.delta_band.min" in line)
    assert "0.42" in row and "account" in row
    assert "default" in next(line for line in shown.splitlines() if "tax.short_term_rate" in line)
    assert "0.40" in next(line for line in cli.ok("config", "show").splitlines() if "gen.delta_band.min" in line)
    history = cli.ok("config", "history", "--account", "ACC-00001")
    assert "narrower band" in history and "tester" in history


@pytest.mark.parametrize(
    ("setup", "args", "says"),
    [
        ((), ("accounts", "create", "--capital", "-5"), "capital"),
        ((), ("accounts", "create", "--capital", "0"), "capital"),
        ((), ("accounts", "show", "ACC-00042"), "no account 'ACC-00042'"),
        ((), ("accounts", "create", "--broker", "DU1111111"), "already linked to ACC-00001"),
        ((), ("accounts", "deposit", "ACC-00001", "12.345"), "2 decimal places"),
        ((), ("accounts", "withdraw", "ACC-00001", "480000"), "exceeds free cash"),
        ((), ("config", "set", "allocation.gen=0.5", "--reason", "x"), "sum to 1"),
        ((), ("config", "set", "gen.delta_band.min=0.6", "--account", "ACC-00001", "--reason", "x"), "gen.delta_band"),
        ((), ("config", "set", "gen.nope=1", "--reason", "x"), "gen.nope"),
        (
            ("accounts", "set-status", "ACC-00001", "MERGED", "--reason", "merged into parent"),
            ("accounts", "set-status", "ACC-00001", "ACTIVE", "--reason", "undo"),
            "cannot go from MERGED to ACTIVE",
        ),
    ],
)
def test_bad_input_is_refused_clearly_and_changes_nothing(
    cli: Cli, setup: tuple[str, ...], args: tuple[str, ...], says: str
) -> None:
    cli.ok("accounts", "create", "--capital", "500000", "--broker", "DU1111111")
    if setup:
        cli.ok(*setup)
    before = cli.snapshot()
    cli.refused(*args, says=says)
    assert cli.snapshot() == before


def test_usage_error_exits_2_without_traceback(cli: Cli) -> None:
    result = cli("accounts", "deposit")
    assert result.code == 2 and "Traceback" not in result.err and "Missing argument" in result.err


def test_audit_verify_reports_a_tampered_record(cli: Cli) -> None:
    cli.ok("accounts", "create", "--capital", "500000", "--broker", "DU2222222")
    path = cli.home / "dynamodb.jsonl"
    items = [json.loads(line) for line in path.read_text().splitlines()]
    for item in items:
        if item["sk"]["S"] == "AUDIT#0000000002":
            item["actor"]["S"] = "mallory"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    result = cli("audit", "verify")
    assert result.code == 1
    assert "ACC-00001 at record 2" in result.err and "altered" in result.err


def test_demo_runs_the_protocol_and_writes_an_offline_report(tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "demo.json"
    config.write_text('{"hitl": {"premium_floor_policy": "place"}}')
    report_dir = tmp_path / "demo"
    args = ("--accounts", "2", "--weeks", "1", "--seed", "3", "--workers", "1", "--out-dir", str(report_dir))
    out = cli.ok("demo", *args, "--config", str(config))
    assert "Protocol run — 2 accounts × 1 weeks (seed 3)" in out
    assert "ACC-00001" in out and "ACC-00002" in out and "event: placed" in out
    page = (report_dir / "report.html").read_text()
    assert "ALL-USE protocol run" in page and "<script src" not in page
    results = json.loads((report_dir / "results.json").read_text())
    assert results["account_weeks"] == 2 and results["trades"] > 0


def test_demo_refuses_a_bad_configuration_file_naming_the_setting(tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "bad.json"
    config.write_text('{"gen": {"tickers": []}}')
    cli.refused("demo", "--accounts", "1", "--weeks", "1", "--config", str(config), says="gen.tickers")
    config.write_text("not json")
    cli.refused("demo", "--accounts", "1", "--weeks", "1", "--config", str(config), says="cannot read configuration")


def test_market_chain_and_bars(cli: Cli) -> None:
    chain = cli.ok("market", "chain", "TSLA", "--at", "2026-12-03 10:00", "--strikes", "3")
    assert "TSLA 2026-12-04" in chain and "Put bid" in chain and "Strike" in chain
    assert len([line for line in chain.splitlines() if line.startswith("│")]) == 6
    bars = cli.ok("market", "bars", "NVDA", "--through", "2026-12-02", "--days", "3")
    assert "2026-12-02" in bars and "2026-11-30" in bars and "ATR-14" in bars
    cli.refused(
        "market", "chain", "TSLA", "--at", "2026-12-03 10:00", "--expiry", "2026-12-05", says="not a listed expiry"
    )
    cli.refused("market", "bars", "XYZ", "--through", "2026-12-02", says="XYZ")
    cli.refused("market", "chain", "TSLA", "--at", "yesterday", says="at:")
