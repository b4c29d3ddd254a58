"""The one DynamoDB table, defined once: the local runtime (moto) creates it from this spec and
the CDK stack declares it from the same spec, so the two cannot drift.

Layout (single table, partitioned by account):
    pk = "ACCOUNT#<id>"  sk = "ACCOUNT"              the account record (status, sleeves, heads, version)
                         sk = "CASH#<seq>"           cash movements
                         sk = "CONFIG#<version>"     configuration override versions
                         sk = "AUDIT#<seq>"          hash-chained audit records
    pk = "GLOBAL"        sk = "GLOBAL"               global head (config version, audit chain head)
                         sk = "CONFIG#…", "AUDIT#…"  global configuration versions and their audit chain
    pk = "BROKER#<id>"   sk = "BROKER"               uniqueness claim: which account owns a brokerage id
    pk = "SEQUENCE"      sk = "ACCOUNT"              account-number sequence
Sparse index `accounts`: only account records carry (`accounts_pk` = "ACCOUNT", `accounts_sk` = id),
so listing every account is a Query on one key, never a Scan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

DEFAULT_TABLE_NAME = "alluse"


@dataclass(frozen=True)
class IndexSpec:
    name: str
    partition_key: str
    sort_key: str


@dataclass(frozen=True)
class TableSpec:
    partition_key: str = "pk"
    sort_key: str = "sk"
    accounts_index: IndexSpec = IndexSpec("accounts", "accounts_pk", "accounts_sk")
    billing_mode: str = "PAY_PER_REQUEST"
    point_in_time_recovery: bool = True

    @property
    def string_attributes(self) -> tuple[str, ...]:
        i = self.accounts_index
        return (self.partition_key, self.sort_key, i.partition_key, i.sort_key)

    def create_table_kwargs(self, table_name: str) -> dict[str, Any]:
        """Arguments for boto3 `create_table` (the local runtime)."""
        i = self.accounts_index
        return {
            "TableName": table_name,
            "BillingMode": self.billing_mode,
            "KeySchema": [
                {"AttributeName": self.partition_key, "KeyType": "HASH"},
                {"AttributeName": self.sort_key, "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in self.string_attributes],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": i.name,
                    "KeySchema": [
                        {"AttributeName": i.partition_key, "KeyType": "HASH"},
                        {"AttributeName": i.sort_key, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        }


TABLE = TableSpec()


def table_name() -> str:
    return os.environ.get("ALLUSE_TABLE_NAME", DEFAULT_TABLE_NAME)
