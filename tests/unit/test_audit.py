"""Hash-chain audit: every alteration, removal or reordering is found at its first broken link."""

import itertools
from dataclasses import replace
from datetime import UTC, datetime

from alluse.domain.accounts import ChainHead
from alluse.domain.audit import GENESIS_HASH, AuditEvent, chain, verify_chain

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def five() -> tuple[list, ChainHead]:
    events = [AuditEvent(f"ACTION_{i}", {"n": i, "amount_cents": i * 100}) for i in range(1, 6)]
    return chain("ACC-1", ChainHead(), events, actor="tester", at=NOW)


def test_chain_links_records() -> None:
    records, head = five()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert head == ChainHead(5, records[-1].hash)
    assert verify_chain("ACC-1", records, head).ok


def test_appending_continues_from_head() -> None:
    records, head = five()
    more, head2 = chain("ACC-1", head, [AuditEvent("LATER", {})], actor="t", at=NOW)
    assert more[0].seq == 6 and more[0].prev_hash == head.hash
    assert verify_chain("ACC-1", records + more, head2).ok


def test_altered_details_found() -> None:
    records, head = five()
    records[2] = replace(records[2], details={"n": 3, "amount_cents": 999_999})
    report = verify_chain("ACC-1", records, head)
    assert not report.ok and report.first_broken_seq == 3 and "altered" in (report.problem or "")


def test_altered_actor_found() -> None:
    records, head = five()
    records[0] = replace(records[0], actor="mallory")
    assert verify_chain("ACC-1", records, head).first_broken_seq == 1


def test_removed_middle_record_found() -> None:
    records, head = five()
    del records[1]
    report = verify_chain("ACC-1", records, head)
    assert report.first_broken_seq == 2 and "missing" in (report.problem or "")


def test_removed_tail_found_through_head() -> None:
    records, head = five()
    report = verify_chain("ACC-1", records[:3], head)
    assert report.first_broken_seq == 4 and "missing" in (report.problem or "")


def test_rehashed_forgery_breaks_next_link() -> None:
    """Altering a record and recomputing its own hash still breaks the link to the next one."""
    from alluse.domain.audit import record_hash

    records, head = five()
    r = records[1]
    forged_details = {"n": 2, "amount_cents": 1}
    forged = replace(
        r,
        details=forged_details,
        hash=record_hash(r.scope, r.seq, r.at, r.actor, r.action, forged_details, r.prev_hash),
    )
    records[1] = forged
    assert verify_chain("ACC-1", records, head).first_broken_seq == 3


def test_records_of_another_scope_do_not_verify() -> None:
    records, head = five()
    assert verify_chain("ACC-2", records, head).first_broken_seq == 1
