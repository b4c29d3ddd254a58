"""Local alert delivery: every delivered alert goes to the log and, as one JSON line, to a file.

The AWS adapter (SNS, e-mail and SMS by priority) implements the same Notifier port later."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from alluse.domain.alerts import Alert

_LOG = logging.getLogger("alluse.alerts")


class FileNotifier:
    def __init__(self, path: Path, *, log: bool = True) -> None:
        self.path = path
        self._log = log  # a long simulation writes thousands: the file keeps them, the console need not
        self._lock = threading.Lock()

    def deliver(self, alert: Alert) -> None:
        record = {
            "at": alert.at.isoformat(),
            "type": alert.type.value,
            "priority": alert.priority.name,
            "account_id": alert.account_id,
            "title": alert.title,
            "body": alert.body,
            "action_script": list(alert.action_script),
            "dedupe_key": alert.dedupe_key,
        }
        if self._log:
            _LOG.warning(
                "%s %s %s: %s", alert.priority.name, alert.type.value, alert.account_id or "GLOBAL", alert.title
            )
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)

    def delivered(self) -> list[dict[str, object]]:
        """What has been delivered so far (oldest first), for the CLI and tests."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
