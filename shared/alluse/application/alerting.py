"""The alert desk: every alert passes the gate (duplicates, hourly caps, off-hours) before the notifier.

The gate's state is kept per desk (per process run); held off-hours alerts are released when the
session opens. Whether a day is a trading day is the calendar's answer, passed in."""

from __future__ import annotations

from datetime import datetime

from alluse.application.ports import Notifier
from alluse.domain.alerts import Alert, AlertGate, Decision
from alluse.domain.config import AlertsConfig


class AlertDesk:
    def __init__(self, notifier: Notifier, config: AlertsConfig) -> None:
        self._notifier = notifier
        self._config = config
        self._gate = AlertGate()

    def raise_alert(self, alert: Alert, *, trading_day: bool) -> Decision:
        self._gate, decision = self._gate.offer(alert, alert.at, self._config, trading_day=trading_day)
        if decision.delivered:
            self._notifier.deliver(alert)
        return decision

    def release_held(self, at: datetime, *, trading_day: bool) -> list[tuple[Alert, Decision]]:
        self._gate, released = self._gate.release_held(at, self._config, trading_day=trading_day)
        for alert, decision in released:
            if decision.delivered:
                self._notifier.deliver(alert)
        return released

    @property
    def held(self) -> int:
        return len(self._gate.held)
