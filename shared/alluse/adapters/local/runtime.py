"""The embedded runtime: AWS services are moto, in this process; state survives between
invocations as a snapshot in a local state directory.

Real DynamoDB applies a conditional transaction atomically; moto checks the conditions and then
writes, with no lock, so two threads could both pass a check. `_serialize_moto_dynamodb` makes
the emulator linearizable (one request at a time), which is what the store's uniqueness and
optimistic-locking guarantees rely on, exactly as they rely on DynamoDB in production.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from alluse.adapters.dynamo import models
from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.dynamo.table import TABLE, table_name

SNAPSHOT_FILE = "dynamodb.jsonl"
_EMULATOR_LOCK = threading.RLock()
_serialized = False

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
        _serialize_moto_dynamodb()
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
            models.configure()  # drop cached connections bound to the mock
            if self._lock_file is not None:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()

    def client(self) -> Any:
        return boto3.client("dynamodb", region_name=LOCAL_ENVIRONMENT["AWS_DEFAULT_REGION"])


def _serialize_moto_dynamodb() -> None:
    global _serialized
    if _serialized:
        return
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with _EMULATOR_LOCK:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    _serialized = True


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
