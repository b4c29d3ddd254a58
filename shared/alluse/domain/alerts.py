"""Alerts and the gate every alert passes before it reaches a human (domain-spec B§9).

`AlertGate.offer` decides, purely from its state, the alert and the time, whether an alert is delivered.
The rules, checked in this order:

1. De-duplication: an alert whose (account, dedupe key) was delivered or held within the dedupe window
   (`dedupe_window_seconds`) is SUPPRESSED_DUPLICATE, unless it has a higher priority than that copy (an
   escalation is news). CRITICAL is de-duplicated too: repeating an unacknowledged CRITICAL is escalation's
   job, not the gate's.
2. Off hours (outside 09:30-16:00 ET on weekdays; 16:00 itself is off hours): an alert below
   `off_hours_min_priority` is HELD_OFF_HOURS: kept in the gate's held queue (at most `queue_size`; when
   full it is refused as CAPPED), never dropped silently. `release_held` offers them again once the session
   is open, so caps and de-duplication apply at release.
3. Hourly caps, per (account, type): a rolling window (`cap_window_seconds`, default 3600 s) counting
   delivered alerts with ``at - window < delivered_at <= at``. A rolling window cannot let 2 x cap through
   around a clock hour. An alert over its cap is CAPPED (dropped). CRITICAL is never capped, but counts
   toward the cap.

Caps count per account (global alerts, account None, form their own bucket): with hundreds of accounts,
one noisy account must not silence another's breach alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum

from alluse.domain.config import SESSION_CLOSE, SESSION_OPEN, AlertsConfig
from alluse.domain.errors import ValidationFailed
from alluse.domain.market import NEW_YORK

__all__ = [
    "Alert",
    "AlertGate",
    "AlertType",
    "Decision",
    "GateOutcome",
    "Priority",
    "in_alert_hours",
]


class AlertType(StrEnum):
    TRADE_OPPORTUNITY = "TRADE_OPPORTUNITY"
    PROTOCOL_BREACH = "PROTOCOL_BREACH"
    SYSTEM_STATUS = "SYSTEM_STATUS"
    ACCOUNT_MANAGEMENT = "ACCOUNT_MANAGEMENT"
    TECHNICAL_ALERT = "TECHNICAL_ALERT"
    COMPLIANCE = "COMPLIANCE"
    SECURITY = "SECURITY"
    LOW_BUFFER = "LOW_BUFFER"


class Priority(IntEnum):
    LOW = 0
    MEDIUM = 1  # L1, account events
    HIGH = 2  # L2, trade opportunities
    CRITICAL = 3  # L3, failures


def _aware(at: datetime, field: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationFailed("time must carry a time zone", field=field)
    return at


@dataclass(frozen=True)
class Alert:
    type: AlertType
    priority: Priority
    account_id: str | None  # None = global (system, technical, security ...)
    title: str
    body: str
    action_script: tuple[str, ...]  # ordered steps for the human (or the automation) to follow
    dedupe_key: str  # alerts with the same key (per account) are the same news
    at: datetime  # when it was raised

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise ValidationFailed("an alert needs a title", field="title")
        if not self.dedupe_key.strip():
            raise ValidationFailed("an alert needs a dedupe key", field="dedupe_key")
        _aware(self.at, "at")


class GateOutcome(StrEnum):
    DELIVER = "DELIVER"
    SUPPRESSED_DUPLICATE = "SUPPRESSED_DUPLICATE"
    CAPPED = "CAPPED"
    HELD_OFF_HOURS = "HELD_OFF_HOURS"


@dataclass(frozen=True)
class Decision:
    outcome: GateOutcome
    reason: str

    @property
    def delivered(self) -> bool:
        return self.outcome is GateOutcome.DELIVER


@dataclass(frozen=True)
class _Seen:
    account_id: str | None
    dedupe_key: str
    priority: Priority
    at: datetime


@dataclass(frozen=True)
class _Delivery:
    account_id: str | None
    type: AlertType
    at: datetime


def in_alert_hours(at: datetime, *, trading_day: bool | None = None) -> bool:
    """Inside 09:30-16:00 ET (16:00 excluded). `trading_day` (from the exchange calendar) overrides the
    weekday rule, so a holiday can count as off hours; None = Monday to Friday."""
    local = _aware(at, "at").astimezone(NEW_YORK)
    open_day = local.weekday() < 5 if trading_day is None else trading_day
    return open_day and SESSION_OPEN <= local.time() < SESSION_CLOSE


def _cap(alert_type: AlertType, config: AlertsConfig) -> int:
    caps = config.hourly_caps
    return {
        AlertType.PROTOCOL_BREACH: caps.protocol_breach,
        AlertType.TRADE_OPPORTUNITY: caps.trade_opportunity,
        AlertType.SYSTEM_STATUS: caps.system_status,
        AlertType.ACCOUNT_MANAGEMENT: caps.account_management,
        AlertType.TECHNICAL_ALERT: caps.technical_alert,
        AlertType.COMPLIANCE: caps.compliance,
        AlertType.SECURITY: caps.security,
        AlertType.LOW_BUFFER: caps.low_buffer,
    }[alert_type]


@dataclass(frozen=True)
class AlertGate:
    """What the gate remembers: recent copies (for de-duplication), recent deliveries (for caps) and the
    alerts held for the next session. Never mutated. Duplicates and caps are per account, so copies and
    deliveries are kept by account: an offer reads and prunes (past its window) only its account's."""

    seen_by: Mapping[str | None, tuple[_Seen, ...]] = field(default_factory=dict)
    delivered_by: Mapping[str | None, tuple[_Delivery, ...]] = field(default_factory=dict)
    held: tuple[Alert, ...] = ()

    @property
    def seen(self) -> tuple[_Seen, ...]:
        return tuple(s for copies in self.seen_by.values() for s in copies)

    @property
    def delivered(self) -> tuple[_Delivery, ...]:
        return tuple(d for deliveries in self.delivered_by.values() for d in deliveries)

    def offer(
        self,
        alert: Alert,
        at: datetime,
        config: AlertsConfig,
        *,
        trading_day: bool | None = None,
    ) -> tuple[AlertGate, Decision]:
        """Decide what happens to `alert` at `at`; returns the new gate and the decision with its reason."""
        gate = self._pruned(_aware(at, "at"), config, alert.account_id)
        duplicate = gate._duplicate_of(alert)
        if duplicate is not None:
            return gate, _suppressed(duplicate, config)
        if not in_alert_hours(at, trading_day=trading_day) and alert.priority < Priority[config.off_hours_min_priority]:
            return gate._hold(alert, at, config)
        return gate._capped_or_delivered(alert, at, config)

    def release_held(
        self,
        at: datetime,
        config: AlertsConfig,
        *,
        trading_day: bool | None = None,
    ) -> tuple[AlertGate, list[tuple[Alert, Decision]]]:
        """Once the session is open, offer the held alerts again (highest priority first, then oldest)."""
        if not self.held or not in_alert_hours(at, trading_day=trading_day):
            return self, []
        queue = sorted(self.held, key=lambda a: (-a.priority, a.at))
        gate = replace(self, held=())
        results: list[tuple[Alert, Decision]] = []
        for alert in queue:
            gate, decision = gate.offer(alert, at, config, trading_day=trading_day)
            results.append((alert, decision))
        return gate, results

    def _pruned(self, at: datetime, config: AlertsConfig, account_id: str | None) -> AlertGate:
        dedupe_from = at - timedelta(seconds=config.dedupe_window_seconds)
        caps_from = at - timedelta(seconds=config.cap_window_seconds)
        seen = tuple(s for s in self.seen_by.get(account_id, ()) if s.at > dedupe_from)
        delivered = tuple(d for d in self.delivered_by.get(account_id, ()) if d.at > caps_from)
        return replace(
            self,
            seen_by={**self.seen_by, account_id: seen},
            delivered_by={**self.delivered_by, account_id: delivered},
        )

    def _duplicate_of(self, alert: Alert) -> _Seen | None:
        """A remembered (delivered or held) copy of the same news at the same or a higher priority."""
        held = (_Seen(a.account_id, a.dedupe_key, a.priority, a.at) for a in self.held)
        for seen in (*self.seen_by.get(alert.account_id, ()), *held):
            same = seen.account_id == alert.account_id and seen.dedupe_key == alert.dedupe_key
            if same and alert.priority <= seen.priority:
                return seen
        return None

    def _hold(self, alert: Alert, at: datetime, config: AlertsConfig) -> tuple[AlertGate, Decision]:
        if len(self.held) >= config.queue_size:
            reason = f"off hours and the held queue is full ({config.queue_size} alerts): dropped"
            return self, Decision(GateOutcome.CAPPED, reason)
        reason = (
            f"off hours ({at.astimezone(NEW_YORK):%a %H:%M} ET): {alert.priority.name} is below"
            f" {config.off_hours_min_priority}; held for the next session"
        )
        return replace(self, held=(*self.held, alert)), Decision(GateOutcome.HELD_OFF_HOURS, reason)

    def _capped_or_delivered(self, alert: Alert, at: datetime, config: AlertsConfig) -> tuple[AlertGate, Decision]:
        cap = _cap(alert.type, config)
        used = sum(1 for d in self.delivered_by.get(alert.account_id, ()) if d.type is alert.type)
        window = f"{used} {alert.type.value} in the last {config.cap_window_seconds} s, cap {cap}"
        if used >= cap and alert.priority < Priority.CRITICAL:
            return self, Decision(GateOutcome.CAPPED, f"{window}: dropped")
        reason = f"{window}: CRITICAL is never capped" if used >= cap else window
        account = alert.account_id
        seen = (*self.seen_by.get(account, ()), _Seen(account, alert.dedupe_key, alert.priority, at))
        deliveries = (*self.delivered_by.get(account, ()), _Delivery(account, alert.type, at))
        delivered = replace(
            self,
            seen_by={**self.seen_by, account: seen},
            delivered_by={**self.delivered_by, account: deliveries},
        )
        return delivered, Decision(GateOutcome.DELIVER, reason)


def _suppressed(copy: _Seen, config: AlertsConfig) -> Decision:
    reason = (
        f"duplicate of '{copy.dedupe_key}' ({copy.priority.name}) at {copy.at.isoformat()},"
        f" within {config.dedupe_window_seconds} s"
    )
    return Decision(GateOutcome.SUPPRESSED_DUPLICATE, reason)
