"""The DynamoDB store on moto: partitioning, listing without Scan, optimistic locking, the
one-to-one brokerage guarantee under concurrency, atomic commits, and tamper detection."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from alluse.adapters.dynamo.models import AccountItem
from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.dynamo.table import table_name
from alluse.adapters.local.runtime import LocalRuntime
from alluse.application.accounts import AccountService
from alluse.application.audit import AuditService
from alluse.application.ports import AccountChange
from alluse.domain.accounts import AccountStatus
from alluse.domain.errors import Conflict, NotFound
from tests.conftest import new_account


@contextmanager
def dynamodb_operations() -> Iterator[Counter[str]]:
    """Counts the DynamoDB API calls the store makes (botocore event hook on its client)."""
    seen: Counter[str] = Counter()
    events = AccountItem._get_connection().connection.client.meta.events

    def count(model: object, **_: object) -> None:
        seen[getattr(model, "name", "?")] += 1

    events.register("before-call.dynamodb.*", count)
    try:
        yield seen
    finally:
        events.unregister("before-call.dynamodb.*", count)


def test_every_item_of_an_account_lives_in_its_partition(runtime: LocalRuntime, accounts: AccountService) -> None:
    account = accounts.create(new_account(brokerage_id="DU1000001"), actor="t")
    accounts.deposit(account.account_id, 100_00, actor="t")
    response = runtime.client().query(
        TableName=table_name(),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ACCOUNT#{account.account_id}"}},
    )
    kinds = sorted({item["sk"]["S"].split("#")[0] for item in response["Items"]})
    assert kinds == ["ACCOUNT", "AUDIT", "CASH"]
    assert len([i for i in response["Items"] if i["sk"]["S"].startswith("AUDIT#")]) == 5


def test_listing_accounts_queries_the_index_never_scans(accounts: AccountService, store: DynamoAccountStore) -> None:
    created = [accounts.create(new_account(1_000 + i), actor="t").account_id for i in range(30)]
    with dynamodb_operations() as ops:
        listed = [a.account_id for a in store.list_accounts()]
    assert listed == sorted(created)
    assert ops["Scan"] == 0 and ops["Query"] >= 1


def test_get_unknown_account_is_not_found(store: DynamoAccountStore) -> None:
    with pytest.raises(NotFound) as err:
        store.get("ACC-404")
    assert err.value.field == "account_id"


def test_account_numbers_are_unique_and_increasing(store: DynamoAccountStore) -> None:
    numbers = [store.next_account_number() for _ in range(5)]
    assert numbers == [1, 2, 3, 4, 5]


def test_stale_version_is_refused_and_writes_nothing(accounts: AccountService, store: DynamoAccountStore) -> None:
    account = accounts.create(new_account(), actor="t")
    accounts.deposit(account.account_id, 500, actor="t")  # someone else moved the account on
    stale = replace(account, name="overwritten")
    with pytest.raises(Conflict) as err:
        store.commit(AccountChange(account=stale, audit=[]))
    assert err.value.field == "version"
    assert store.get(account.account_id).name == account.name
    assert len(store.movements(account.account_id)) == 2


def test_duplicate_brokerage_id_refused_whoever_asks(accounts: AccountService, store: DynamoAccountStore) -> None:
    first = accounts.create(new_account(brokerage_id="DU2000002"), actor="alice")
    second = accounts.create(new_account(), actor="bob")
    with pytest.raises(Conflict, match=f"already linked to {first.account_id}"):
        accounts.link_broker(second.account_id, "DU2000002", actor="bob")
    with pytest.raises(Conflict):
        accounts.create(new_account(brokerage_id="DU2000002"), actor="carol")
    unchanged = store.get(second.account_id)
    assert unchanged.status == AccountStatus.PENDING_BROKER_LINK and unchanged.brokerage_id is None
    assert [a.account_id for a in store.list_accounts()] == [first.account_id, second.account_id]


def test_store_refuses_duplicate_claim_even_when_the_caller_skips_the_check(
    accounts: AccountService, store: DynamoAccountStore
) -> None:
    """The guarantee is the transaction's, not the use case's friendly pre-check."""
    accounts.create(new_account(brokerage_id="DU3000003"), actor="t")
    other = accounts.create(new_account(), actor="t")
    sneaky = replace(other, brokerage_id="DU3000003", status=AccountStatus.ACTIVE)
    with pytest.raises(Conflict) as err:
        store.commit(AccountChange(account=sneaky, audit=[], claim_brokerage_id="DU3000003"))
    assert err.value.field == "brokerage_id"
    assert store.get(other.account_id).brokerage_id is None  # the account write was rolled back with it


def _race(n: int, action) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)
    wins, losses = [], []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            result = action(i)
            with lock:
                wins.append(result)
        except Conflict as err:
            with lock:
                losses.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins, losses


def test_concurrent_links_of_one_brokerage_id_exactly_one_wins(
    accounts: AccountService, store: DynamoAccountStore, audit: AuditService
) -> None:
    pending = [accounts.create(new_account(), actor="t").account_id for _ in range(8)]
    wins, losses = _race(8, lambda i: accounts.link_broker(pending[i], "DU4000004", actor=f"op{i}"))
    assert len(wins) == 1 and len(losses) == 7
    assert all(err.field == "brokerage_id" for err in losses)
    winner = wins[0].account_id
    assert store.brokerage_owner("DU4000004") == winner
    for account_id in pending:
        account = store.get(account_id)
        linked = account_id == winner
        assert (account.brokerage_id == "DU4000004") is linked
        assert (account.status == AccountStatus.ACTIVE) is linked
        actions = [r.action for r in audit.trail(account_id)]
        assert ("BROKER_LINKED" in actions) is linked  # losers wrote nothing
        assert audit.verify(account_id).ok


def test_concurrent_creates_with_one_brokerage_id_create_one_account(
    accounts: AccountService, store: DynamoAccountStore
) -> None:
    wins, losses = _race(8, lambda i: accounts.create(new_account(brokerage_id="DU5000005"), actor=f"op{i}"))
    assert len(wins) == 1 and len(losses) == 7
    linked = [a for a in store.list_accounts() if a.brokerage_id == "DU5000005"]
    assert [a.account_id for a in linked] == [wins[0].account_id]


def test_concurrent_deposits_lose_nothing(store: DynamoAccountStore, clock) -> None:  # type: ignore[no-untyped-def]
    service = AccountService(store, clock, max_attempts=50)
    account = service.create(new_account(1_000), actor="t")
    wins, losses = _race(10, lambda i: service.deposit(account.account_id, 1_00, actor=f"op{i}"))
    final = store.get(account.account_id)
    assert len(wins) + len(losses) == 10
    assert final.cash_cents == 1_000_00 + 1_00 * len(wins)
    assert len(store.movements(account.account_id)) == 1 + len(wins)
    assert AuditService(store).verify(account.account_id).ok


def test_caller_chosen_duplicate_account_id_refused(accounts: AccountService) -> None:
    accounts.create(new_account(account_id="TEAM-ALPHA"), actor="t")
    with pytest.raises(Conflict, match="already exists"):
        accounts.create(new_account(account_id="TEAM-ALPHA"), actor="t")


def test_altered_stored_audit_record_is_found(
    runtime: LocalRuntime, accounts: AccountService, audit: AuditService
) -> None:
    account = accounts.create(new_account(brokerage_id="DU6000006"), actor="t")
    accounts.deposit(account.account_id, 1_00, actor="t")
    runtime.client().update_item(
        TableName=table_name(),
        Key={"pk": {"S": f"ACCOUNT#{account.account_id}"}, "sk": {"S": "AUDIT#0000000002"}},
        UpdateExpression="SET actor = :a",
        ExpressionAttributeValues={":a": {"S": "mallory"}},
    )
    report = audit.verify(account.account_id)
    assert not report.ok and report.first_broken_seq == 2


@pytest.mark.parametrize(("removed", "first_broken"), [(3, 3), (5, 5)])
def test_removed_stored_audit_record_is_found(
    runtime: LocalRuntime, accounts: AccountService, audit: AuditService, removed: int, first_broken: int
) -> None:
    account = accounts.create(new_account(brokerage_id="DU7000007"), actor="t")
    accounts.deposit(account.account_id, 1_00, actor="t")  # 5 records: created, funded, linked, status, funded
    runtime.client().delete_item(
        TableName=table_name(),
        Key={"pk": {"S": f"ACCOUNT#{account.account_id}"}, "sk": {"S": f"AUDIT#{removed:010d}"}},
    )
    report = audit.verify(account.account_id)
    assert report.first_broken_seq == first_broken and "missing" in (report.problem or "")
    assert [r.ok for r in audit.verify_all()].count(False) == 1


def test_state_persists_between_runtimes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alluse.application.clock import SystemClock

    with LocalRuntime(tmp_path) as rt:
        created = AccountService(rt.store, SystemClock()).create(new_account(brokerage_id="DU8000008"), actor="t")
    with LocalRuntime(tmp_path) as rt:
        again = rt.store.get(created.account_id)
        assert again == created
        assert AuditService(rt.store).verify(created.account_id).ok
        with pytest.raises(Conflict):  # the brokerage claim survived too
            AccountService(rt.store, SystemClock()).create(new_account(brokerage_id="DU8000008"), actor="t")


def test_sleeve_positions_and_pnl_survive_the_store(accounts: AccountService, store: DynamoAccountStore) -> None:
    from datetime import UTC, date, datetime

    from alluse.domain.brokerage import Execution, Settlement, SettlementKind, Side
    from alluse.domain.instruments import OptionContract, OptionRight
    from alluse.domain.ledger import book_execution, book_settlement
    from alluse.domain.sleeves import SleeveKind

    now = datetime(2026, 12, 3, 15, tzinfo=UTC)
    put = OptionContract("TSLA", date(2026, 12, 4), 24_000, OptionRight.PUT)
    account = accounts.create(new_account(brokerage_id="DU9000009"), actor="t")
    traded = book_execution(account, SleeveKind.GEN, Execution("E1", "P1", "r", put, Side.SELL, 2, 310, 130, now))
    with pytest.raises(Conflict):  # a settlement the sleeves do not hold is refused
        book_settlement(traded, Settlement(SettlementKind.ASSIGNED, put, -5, 500, -12_000_000, 23_000, now))
    traded = book_settlement(traded, Settlement(SettlementKind.ASSIGNED, put, -2, 200, -4_800_000, 23_000, now))
    assert traded.sleeve(SleeveKind.GEN).costs  # shares with their basis
    stored = store.commit(AccountChange(account=traded, audit=[]))
    assert store.get(account.account_id) == stored
    assert store.get(account.account_id).sleeve(SleeveKind.GEN).positions == traded.sleeve(SleeveKind.GEN).positions
