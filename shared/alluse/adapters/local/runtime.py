"""The embedded runtime: AWS services are moto, in this process; state survives between
invocations as a snapshot in a local state directory.

Two fixes make moto behave like DynamoDB where the store depends on it (`_tune_moto_dynamodb`):
- Real DynamoDB applies a conditional transaction atomically; moto checks the conditions and then
  writes, with no lock, so two threads could both pass a check. Requests are serialized (one at a
  time), which is what the store's uniqueness and optimistic-locking guarantees rely on.
- moto backs up the whole table once per item of every transaction (deepcopy), which makes each
  write cost O(table size). It backs up only the items the transaction touches instead, and
  restores exactly those if the transaction is cancelled.
- moto answers a Query on the table's key by sorting every item of the table; it is shown only
  the queried partition instead, so a query costs what the partition holds, as in DynamoDB.
- moto reads a TransactWriteItems request by walking botocore's shapes over every attribute (the
  commit path's largest cost). In DynamoDB's JSON protocol the body already is the parameters, but
  for binary values (base64): such a body is read with `json.loads` unless it holds a binary type.
- moto lists a handler class's methods (inspect.getmembers) on every request; the list is kept.
"""

from __future__ import annotations

import copy
import fcntl
import functools
import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from moto import mock_aws
from moto.core import responses as moto_responses
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler

from alluse.adapters.dynamo import models
from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.dynamo.table import TABLE, table_name

SNAPSHOT_FILE = "dynamodb.jsonl"
_EMULATOR_LOCK = threading.RLock()
_tuned = False
_requests = 0  # DynamoDB requests served in this process (each API call, as AWS would bill it)


def dynamodb_requests() -> int:
    """How many DynamoDB requests the embedded emulator has answered in this process so far."""
    return _requests


LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",  # needed by moto for DynamoDB Streams (ARCHITECTURE §6)
}


def default_state_dir() -> Path:
    return Path(os.environ.get("ALLUSE_HOME", Path.home() / ".alluse"))


class LocalRuntime:
    """`with LocalRuntime(state_dir) as rt: rt.store ...` — one embedded platform, persisted on exit.

    `state_dir=None` runs in memory only (tests). A file lock keeps two processes from working on
    the same state directory at once.
    """

    def __init__(self, state_dir: Path | None) -> None:
        self.state_dir = state_dir
        self._lock_file: Any = None
        self._mock = mock_aws()
        self.store = DynamoAccountStore()

    def __enter__(self) -> LocalRuntime:
        for key, value in LOCAL_ENVIRONMENT.items():
            os.environ[key] = value  # never talk to a real AWS account from the local runtime
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.state_dir / ".lock", "w")
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        self._mock.start()
        _tune_moto_dynamodb()
        models.configure(table=table_name(), region=LOCAL_ENVIRONMENT["AWS_DEFAULT_REGION"])
        client = self.client()
        client.create_table(**TABLE.create_table_kwargs(table_name()))
        if self.state_dir is not None:
            _load(client, self.state_dir / SNAPSHOT_FILE)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            # Every commit is atomic, so what is in the table is consistent even after an error.
            if self.state_dir is not None:
                _save(self.client(), self.state_dir / SNAPSHOT_FILE)
        finally:
            self._mock.stop()
            models.disconnect()  # connections made under the mock must not outlive it
            if self._lock_file is not None:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()

    def client(self) -> Any:
        return boto3.client("dynamodb", region_name=LOCAL_ENVIRONMENT["AWS_DEFAULT_REGION"])


def _tune_moto_dynamodb() -> None:
    global _tuned
    if _tuned:
        return
    call_action = DynamoHandler.call_action
    transact_write_items = DynamoDBBackend.transact_write_items

    def serialized_call_action(self: DynamoHandler) -> Any:
        global _requests
        with _EMULATOR_LOCK:
            _requests += 1
            return call_action(self)

    def transact_write_items_with_item_backups(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        # Runs under _EMULATOR_LOCK, so disabling Table deep copies here affects no other request.
        backups = [_backup(self, entry) for entry in transact_items]
        Table.__deepcopy__ = _no_copy  # type: ignore[attr-defined]
        try:
            transact_write_items(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(backups):
                _restore(table, hash_value, range_value, item)
            raise
        finally:
            del Table.__deepcopy__  # type: ignore[attr-defined]

    parse_parameters = DynamoHandler.parse_parameters

    def parse_transact_write_as_json(self: DynamoHandler, request: Any) -> None:
        if self._get_action() != "TransactWriteItems":
            return parse_parameters(self, request)
        body = request.data
        text = body.decode() if isinstance(body, bytes) else body
        if '"B":' in text or '"BS":' in text:
            return parse_parameters(self, request)
        self.params = json.loads(text)

    listed = functools.lru_cache(maxsize=None)(moto_responses.method_names_from_class)  # type: ignore[attr-defined]
    moto_responses.method_names_from_class = listed  # type: ignore[attr-defined]

    table_query = Table.query

    def partition_query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name is not None or hash_key is None or not self.range_key_attr:
            return table_query(self, hash_key, *args, **kwargs)
        everything = self.items  # safe to swap: requests are serialized by _EMULATOR_LOCK
        self.items = defaultdict(dict, {hash_key: everything[hash_key]} if hash_key in everything else {})
        try:
            return table_query(self, hash_key, *args, **kwargs)
        finally:
            self.items = everything

    Table.query = partition_query  # type: ignore[method-assign]
    DynamoHandler.call_action = serialized_call_action  # type: ignore[method-assign]
    DynamoHandler.parse_parameters = parse_transact_write_as_json  # type: ignore[method-assign,assignment]
    DynamoDBBackend.transact_write_items = transact_write_items_with_item_backups  # type: ignore[method-assign]
    _tuned = True


def _no_copy(table: Table, memo: dict[int, Any]) -> Table:
    return table


def _backup(backend: DynamoDBBackend, entry: dict[str, Any]) -> tuple[Table, Any, Any, Item | None]:
    op_type, op = next(iter(entry.items()))
    table = backend.get_table(op["TableName"])
    attrs = op["Item"] if op_type == "Put" else op["Key"]
    hash_value = DynamoType(attrs[table.hash_key_attr])
    range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    current = table.get_item(hash_value, range_value)
    # A Put or Delete replaces the stored item object and leaves it as it was: keeping it is the backup.
    # Only an Update changes it in place.
    return table, hash_value, range_value, copy.deepcopy(current) if op_type == "Update" else current


def _restore(table: Table, hash_value: Any, range_value: Any, item: Item | None) -> None:
    if range_value is None:
        if item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item  # type: ignore[assignment]  # hash-only tables map to items
    elif item is None:
        table.items.get(hash_value, {}).pop(range_value, None)
    else:
        table.items[hash_value][range_value] = item


def _items(client: Any) -> Iterator[dict[str, Any]]:
    # Exporting the emulator's state is the one place a Scan is right: it reads everything on purpose.
    for page in client.get_paginator("scan").paginate(TableName=table_name(), ConsistentRead=True):
        yield from page["Items"]


def _save(client: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        for item in _items(client):
            out.write(json.dumps(item, sort_keys=True) + "\n")
    tmp.replace(path)  # atomic: a crash leaves the previous snapshot intact


def _load(client: Any, path: Path) -> None:
    if not path.exists():
        return
    with path.open() as lines:
        items = [json.loads(line) for line in lines if line.strip()]
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        pending: dict[str, Any] = {table_name(): batch}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
