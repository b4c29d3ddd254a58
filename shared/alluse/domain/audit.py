"""Hash-chained audit records, one chain per account (and one for global settings).

Each record's hash covers its content and the previous record's hash, so altering a record,
removing one, or reordering them breaks the chain at a point `verify_chain` names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alluse.domain.accounts import ChainHead

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    scope: str  # account id, or "GLOBAL"
    seq: int  # 1, 2, 3, ... without gaps
    at: datetime
    actor: str
    action: str  # ACCOUNT_CREATED, ACCOUNT_FUNDED, BROKER_LINKED, STATUS_CHANGED, CONFIG_CHANGED, ...
    details: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is chained."""

    action: str
    details: Mapping[str, Any]


@dataclass(frozen=True)
class ChainReport:
    scope: str
    checked: int
    first_broken_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None


def record_hash(
    scope: str, seq: int, at: datetime, actor: str, action: str, details: Mapping[str, Any], prev: str
) -> str:
    body = {
        "scope": scope,
        "seq": seq,
        "at": at.isoformat(),
        "actor": actor,
        "action": action,
        "details": details,
        "prev": prev,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain(
    scope: str, head: ChainHead, events: Sequence[AuditEvent], *, actor: str, at: datetime
) -> tuple[list[AuditRecord], ChainHead]:
    """Append events after `head`; returns the new records and the new head."""
    records: list[AuditRecord] = []
    prev, seq = head.hash, head.seq
    for event in events:
        seq += 1
        details = _jsonable(event.details)
        digest = record_hash(scope, seq, at, actor, event.action, details, prev)
        records.append(AuditRecord(scope, seq, at, actor, event.action, details, prev, digest))
        prev = digest
    return records, ChainHead(seq=seq, hash=prev)


def verify_chain(scope: str, records: Sequence[AuditRecord], head: ChainHead | None) -> ChainReport:
    """Check every link; `head` (the seq/hash the account record says is last) catches a removed tail."""
    prev = GENESIS_HASH
    for expected_seq, record in enumerate(sorted(records, key=lambda r: r.seq), start=1):
        if record.seq != expected_seq:
            return ChainReport(scope, expected_seq - 1, expected_seq, f"record {expected_seq} is missing")
        if record.prev_hash != prev:
            return ChainReport(
                scope, expected_seq - 1, record.seq, "previous-hash link does not match record before it"
            )
        recomputed = record_hash(scope, record.seq, record.at, record.actor, record.action, record.details, prev)
        if recomputed != record.hash:
            return ChainReport(scope, expected_seq - 1, record.seq, "content was altered (hash mismatch)")
        prev = record.hash
    checked = len(records)
    if head is not None and (head.seq != checked or head.hash != prev):
        if head.seq > checked:
            return ChainReport(scope, checked, checked + 1, f"records {checked + 1}..{head.seq} are missing")
        return ChainReport(scope, checked, head.seq or 1, "chain does not end at the head the account records")
    return ChainReport(scope, checked)


def _jsonable(details: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise details to what survives a JSON round trip, so the hash is stable after storage."""
    normalised: dict[str, Any] = json.loads(json.dumps(details, sort_keys=True, default=str))
    return normalised
