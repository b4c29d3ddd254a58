"""Alerts through the desk: the gate decides, the local notifier writes the log and the file."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from alluse.adapters.local.notifier import FileNotifier
from alluse.application.alerting import AlertDesk
from alluse.domain.alerts import Alert, AlertType, GateOutcome, Priority
from alluse.domain.config import default_config
from alluse.domain.market import NEW_YORK

SESSION = datetime(2026, 12, 3, 10, 30, tzinfo=NEW_YORK)
EVENING = datetime(2026, 12, 3, 20, 0, tzinfo=NEW_YORK)


def breach(at: datetime, key: str = "ACC-1:TSLA:L2", priority: Priority = Priority.HIGH) -> Alert:
    return Alert(
        AlertType.PROTOCOL_BREACH, priority, "ACC-1", "TSLA put at L2", "2.1 × ATR", ("look for a roll",), key, at
    )


def desk(tmp_path: Path) -> tuple[AlertDesk, FileNotifier]:
    notifier = FileNotifier(tmp_path / "alerts.jsonl")
    return AlertDesk(notifier, default_config().alerts), notifier


def test_delivered_alerts_reach_the_file(tmp_path: Path) -> None:
    alerts, notifier = desk(tmp_path)
    assert alerts.raise_alert(breach(SESSION), trading_day=True).outcome is GateOutcome.DELIVER
    [written] = notifier.delivered()
    assert written["type"] == "PROTOCOL_BREACH" and written["priority"] == "HIGH"
    assert written["action_script"] == ["look for a roll"] and written["account_id"] == "ACC-1"


def test_duplicates_and_caps_do_not_reach_the_file(tmp_path: Path) -> None:
    alerts, notifier = desk(tmp_path)
    alerts.raise_alert(breach(SESSION), trading_day=True)
    again = alerts.raise_alert(breach(SESSION + timedelta(minutes=1)), trading_day=True)
    assert again.outcome is GateOutcome.SUPPRESSED_DUPLICATE
    cap = default_config().alerts.hourly_caps.protocol_breach
    decisions = [
        alerts.raise_alert(breach(SESSION + timedelta(minutes=2 + n), key=f"k{n}"), trading_day=True).outcome
        for n in range(cap + 2)
    ]
    assert decisions.count(GateOutcome.CAPPED) >= 2
    assert len(notifier.delivered()) == cap


def test_off_hours_low_priority_is_held_until_the_session(tmp_path: Path) -> None:
    alerts, notifier = desk(tmp_path)
    low = breach(EVENING, key="low", priority=Priority.LOW)
    assert alerts.raise_alert(low, trading_day=True).outcome is GateOutcome.HELD_OFF_HOURS
    assert notifier.delivered() == [] and alerts.held == 1
    released = alerts.release_held(SESSION + timedelta(days=1), trading_day=True)
    assert [d.outcome for _, d in released] == [GateOutcome.DELIVER]
    assert len(notifier.delivered()) == 1 and alerts.held == 0


def test_critical_is_delivered_off_hours(tmp_path: Path) -> None:
    alerts, notifier = desk(tmp_path)
    decision = alerts.raise_alert(breach(EVENING, key="l3", priority=Priority.CRITICAL), trading_day=True)
    assert decision.outcome is GateOutcome.DELIVER and len(notifier.delivered()) == 1
