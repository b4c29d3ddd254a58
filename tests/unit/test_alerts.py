from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from alluse.domain.alerts import (
    Alert,
    AlertGate,
    AlertType,
    Decision,
    GateOutcome,
    Priority,
    in_alert_hours,
)
from alluse.domain.config import AlertCaps, AlertsConfig
from alluse.domain.errors import ValidationFailed
from alluse.domain.market import NEW_YORK

CFG = AlertsConfig()
OPEN = datetime(2026, 11, 24, 11, 0, tzinfo=NEW_YORK)  # a Tuesday, in session
NIGHT = datetime(2026, 11, 24, 20, 0, tzinfo=NEW_YORK)
DELIVER, DUP, CAPPED, HELD = (
    GateOutcome.DELIVER,
    GateOutcome.SUPPRESSED_DUPLICATE,
    GateOutcome.CAPPED,
    GateOutcome.HELD_OFF_HOURS,
)


def alert(
    key: str,
    *,
    type: AlertType = AlertType.PROTOCOL_BREACH,
    priority: Priority = Priority.HIGH,
    account: str | None = "ACC-001",
    at: datetime = OPEN,
) -> Alert:
    steps = ("check the position", "roll down and out inside the band")
    return Alert(type, priority, account, f"alert {key}", "body", steps, key, at)


def offer_all(gate: AlertGate, alerts: list[Alert], at: datetime) -> tuple[AlertGate, list[Decision]]:
    decisions = []
    for a in alerts:
        gate, decision = gate.offer(a, at, CFG)
        decisions.append(decision)
    return gate, decisions


def test_first_alert_is_delivered() -> None:
    gate, decision = AlertGate().offer(alert("k"), OPEN, CFG)
    assert decision.outcome is DELIVER and decision.delivered
    assert len(gate.delivered) == 1 and AlertGate().delivered == ()  # the old gate is untouched


def test_sixth_breach_alert_in_an_hour_is_capped_and_the_cap_resets() -> None:
    breaches = [alert(f"breach-{i}") for i in range(6)]
    gate, decisions = offer_all(AlertGate(), breaches[:5], OPEN)
    assert [d.outcome for d in decisions] == [DELIVER] * 5
    gate, sixth = gate.offer(breaches[5], OPEN + timedelta(minutes=59), CFG)
    assert sixth.outcome is CAPPED and "cap 5" in sixth.reason
    # rolling window: an hour after the first five they no longer count
    _, later = gate.offer(alert("breach-6"), OPEN + timedelta(hours=1), CFG)
    assert later.outcome is DELIVER


def test_caps_per_type_come_from_config() -> None:
    systems = [alert(f"s{i}", type=AlertType.SYSTEM_STATUS, account=None) for i in range(4)]
    _, decisions = offer_all(AlertGate(), systems, OPEN)
    assert [d.outcome for d in decisions] == [DELIVER] * 3 + [CAPPED]
    cfg = AlertsConfig(hourly_caps=AlertCaps(system_status=1))
    gate, first = AlertGate().offer(systems[0], OPEN, cfg)
    _, second = gate.offer(systems[1], OPEN, cfg)
    assert (first.outcome, second.outcome) == (DELIVER, CAPPED)


def test_caps_count_per_account_and_per_type() -> None:
    gate, _ = offer_all(AlertGate(), [alert(f"b{i}") for i in range(5)], OPEN)
    _, other_account = gate.offer(alert("b5", account="ACC-002"), OPEN, CFG)
    _, other_type = gate.offer(alert("t", type=AlertType.TRADE_OPPORTUNITY), OPEN, CFG)
    assert other_account.outcome is DELIVER and other_type.outcome is DELIVER


def test_extra_types_use_their_configured_caps() -> None:
    cfg = AlertsConfig(hourly_caps=AlertCaps(low_buffer=1))
    gate, first = AlertGate().offer(alert("x", type=AlertType.LOW_BUFFER), OPEN, cfg)
    _, second = gate.offer(alert("y", type=AlertType.LOW_BUFFER), OPEN, cfg)
    assert (first.outcome, second.outcome) == (DELIVER, CAPPED)


def test_critical_is_never_capped_but_counts() -> None:
    gate, _ = offer_all(AlertGate(), [alert(f"b{i}") for i in range(5)], OPEN)
    gate, critical = gate.offer(alert("l3", priority=Priority.CRITICAL), OPEN, CFG)
    assert critical.outcome is DELIVER and "never capped" in critical.reason
    assert len(gate.delivered) == 6


def test_duplicates_are_suppressed_within_the_window() -> None:
    gate, _ = AlertGate().offer(alert("tsla-l2"), OPEN, CFG)
    gate, again = gate.offer(alert("tsla-l2"), OPEN + timedelta(minutes=30), CFG)
    assert again.outcome is DUP and "tsla-l2" in again.reason
    gate, lower = gate.offer(alert("tsla-l2", priority=Priority.MEDIUM), OPEN + timedelta(minutes=31), CFG)
    assert lower.outcome is DUP
    _, after = gate.offer(alert("tsla-l2"), OPEN + timedelta(hours=1), CFG)
    assert after.outcome is DELIVER  # the window is measured from the delivered copy


def test_windows_come_from_config() -> None:
    cfg = AlertsConfig(dedupe_window_seconds=600, cap_window_seconds=600, hourly_caps=AlertCaps(protocol_breach=1))
    gate, _ = AlertGate().offer(alert("tsla-l2"), OPEN, cfg)
    gate, capped = gate.offer(alert("nvda-l2"), OPEN + timedelta(minutes=9), cfg)
    assert capped.outcome is CAPPED and "in the last 600 s" in capped.reason
    _, again = gate.offer(alert("tsla-l2"), OPEN + timedelta(minutes=9), cfg)
    assert again.outcome is DUP and "within 600 s" in again.reason
    gate, later = gate.offer(alert("tsla-l2"), OPEN + timedelta(minutes=10), cfg)
    assert later.outcome is DELIVER  # both windows have passed


def test_same_key_on_another_account_is_not_a_duplicate() -> None:
    gate, _ = AlertGate().offer(alert("tsla-l2"), OPEN, CFG)
    _, other = gate.offer(alert("tsla-l2", account="ACC-002"), OPEN, CFG)
    assert other.outcome is DELIVER


def test_escalation_passes_the_dedupe_but_critical_duplicates_do_not() -> None:
    gate, _ = AlertGate().offer(alert("tsla"), OPEN, CFG)
    gate, escalated = gate.offer(alert("tsla", priority=Priority.CRITICAL), OPEN, CFG)
    _, repeated = gate.offer(alert("tsla", priority=Priority.CRITICAL), OPEN, CFG)
    assert (escalated.outcome, repeated.outcome) == (DELIVER, DUP)


def test_duplicates_do_not_use_up_the_cap() -> None:
    gate = AlertGate()
    for _ in range(10):
        gate, _ = gate.offer(alert("same"), OPEN, CFG)
    assert len(gate.delivered) == 1


def test_capped_alert_is_not_remembered_as_seen() -> None:
    gate, _ = offer_all(AlertGate(), [alert(f"b{i}") for i in range(5)], OPEN)
    gate, capped = gate.offer(alert("late"), OPEN + timedelta(minutes=10), CFG)
    _, retry = gate.offer(alert("late"), OPEN + timedelta(hours=1), CFG)
    assert (capped.outcome, retry.outcome) == (CAPPED, DELIVER)


def test_off_hours_low_is_held_and_high_is_delivered() -> None:
    gate, low = AlertGate().offer(alert("info", priority=Priority.LOW), NIGHT, CFG)
    gate, high = gate.offer(alert("l2", priority=Priority.HIGH), NIGHT, CFG)
    _, critical = gate.offer(alert("l3", priority=Priority.CRITICAL), NIGHT, CFG)
    assert (low.outcome, high.outcome, critical.outcome) == (HELD, DELIVER, DELIVER)
    assert "below HIGH" in low.reason
    assert [a.dedupe_key for a in gate.held] == ["info"]


def test_off_hours_min_priority_is_a_setting() -> None:
    cfg = AlertsConfig(off_hours_min_priority="CRITICAL")
    _, high = AlertGate().offer(alert("l2"), NIGHT, cfg)
    assert high.outcome is HELD


def test_duplicate_of_a_held_alert_is_suppressed() -> None:
    gate, _ = AlertGate().offer(alert("info", priority=Priority.LOW), NIGHT, CFG)
    gate, again = gate.offer(alert("info", priority=Priority.LOW), NIGHT + timedelta(hours=3), CFG)
    assert again.outcome is DUP and len(gate.held) == 1


def test_held_alerts_are_released_at_the_open_in_priority_order() -> None:
    gate, _ = AlertGate().offer(alert("low", priority=Priority.LOW), NIGHT, CFG)
    gate, _ = gate.offer(alert("medium", priority=Priority.MEDIUM), NIGHT, CFG)
    same, nothing = gate.release_held(NIGHT + timedelta(hours=2), CFG)
    assert nothing == [] and same is gate
    morning = datetime(2026, 11, 25, 9, 30, tzinfo=NEW_YORK)
    gate, released = gate.release_held(morning, CFG)
    assert [(a.dedupe_key, d.outcome) for a, d in released] == [("medium", DELIVER), ("low", DELIVER)]
    assert gate.held == () and len(gate.delivered) == 2


def test_release_applies_the_caps() -> None:
    gate = AlertGate()
    for i in range(6):
        gate, _ = gate.offer(alert(f"b{i}", priority=Priority.MEDIUM), NIGHT, CFG)
    gate, released = gate.release_held(datetime(2026, 11, 25, 10, 0, tzinfo=NEW_YORK), CFG)
    assert [d.outcome for _, d in released] == [DELIVER] * 5 + [CAPPED]


def test_full_held_queue_refuses_more() -> None:
    cfg = AlertsConfig(queue_size=1)
    gate, _ = AlertGate().offer(alert("a", priority=Priority.LOW), NIGHT, cfg)
    gate, full = gate.offer(alert("b", priority=Priority.LOW), NIGHT, cfg)
    assert full.outcome is CAPPED and "queue is full" in full.reason and len(gate.held) == 1


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (datetime(2026, 11, 24, 9, 30, tzinfo=NEW_YORK), True),
        (datetime(2026, 11, 24, 9, 29, 59, tzinfo=NEW_YORK), False),
        (datetime(2026, 11, 24, 15, 59, 59, tzinfo=NEW_YORK), True),
        (datetime(2026, 11, 24, 16, 0, tzinfo=NEW_YORK), False),
        (datetime(2026, 11, 28, 11, 0, tzinfo=NEW_YORK), False),  # Saturday
        (datetime(2026, 11, 24, 15, 0, tzinfo=UTC), True),  # 10:00 ET
        (datetime(2026, 11, 24, 14, 0, tzinfo=UTC), False),  # 09:00 ET
    ],
)
def test_alert_hours(at: datetime, inside: bool) -> None:
    assert in_alert_hours(at) is inside


def test_calendar_can_mark_a_holiday_off_hours() -> None:
    thanksgiving = datetime(2026, 11, 26, 11, 0, tzinfo=NEW_YORK)
    assert in_alert_hours(thanksgiving) is True
    assert in_alert_hours(thanksgiving, trading_day=False) is False
    _, d = AlertGate().offer(alert("x", priority=Priority.LOW), thanksgiving, CFG, trading_day=False)
    assert d.outcome is HELD


def test_alert_and_gate_need_aware_times() -> None:
    with pytest.raises(ValidationFailed):
        alert("x", at=datetime(2026, 11, 24, 11, 0))
    with pytest.raises(ValidationFailed):
        AlertGate().offer(alert("x"), datetime(2026, 11, 24, 11, 0), CFG)
    with pytest.raises(ValidationFailed):
        alert(" ")


def test_alert_settings_refuse_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        AlertsConfig(dedupe_window=5)  # type: ignore[call-arg]
