"""The embedded DynamoDB (moto, tuned by the local runtime) keeps DynamoDB's semantics."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from alluse.adapters.dynamo.table import table_name
from alluse.adapters.local.runtime import LocalRuntime


def key(pk: str, sk: str = "X") -> dict[str, dict[str, str]]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_cancelled_transaction_leaves_every_item_as_it_was(runtime: LocalRuntime) -> None:
    client, table = runtime.client(), table_name()
    client.put_item(TableName=table, Item={**key("B"), "x": {"N": "1"}})
    client.put_item(TableName=table, Item={**key("C"), "x": {"N": "1"}})
    with pytest.raises(ClientError) as err:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {**key("A"), "x": {"N": "1"}}}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": key("B"),
                        "UpdateExpression": "SET x = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {"Delete": {"TableName": table, "Key": key("C")}},
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": key("B", "missing"),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    assert err.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "Item" not in client.get_item(TableName=table, Key=key("A"))
    assert client.get_item(TableName=table, Key=key("B"))["Item"]["x"] == {"N": "1"}
    assert client.get_item(TableName=table, Key=key("C"))["Item"]["x"] == {"N": "1"}


def test_successful_transaction_applies_every_item(runtime: LocalRuntime) -> None:
    client, table = runtime.client(), table_name()
    client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": {**key("A", str(i)), "x": {"N": str(i)}}}} for i in range(5)
        ]
    )
    items = client.query(
        TableName=table, KeyConditionExpression="pk = :a", ExpressionAttributeValues={":a": {"S": "A"}}
    )["Items"]
    assert [i["sk"]["S"] for i in items] == ["0", "1", "2", "3", "4"]


def test_query_sees_only_its_partition_in_key_order(runtime: LocalRuntime) -> None:
    client, table = runtime.client(), table_name()
    for pk in ("P1", "P2", "P3"):
        for sk in ("b", "a", "c"):
            client.put_item(TableName=table, Item=key(pk, sk))
    page = client.query(
        TableName=table,
        KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
        ExpressionAttributeValues={":p": {"S": "P2"}, ":s": {"S": "a"}},
    )
    assert [(i["pk"]["S"], i["sk"]["S"]) for i in page["Items"]] == [("P2", "a")]
    newest_first = client.query(
        TableName=table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "P3"}},
        ScanIndexForward=False,
        Limit=2,
    )
    assert [i["sk"]["S"] for i in newest_first["Items"]] == ["c", "b"]
    assert "Items" in client.query(
        TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "none"}}
    )


def test_a_transaction_reads_every_attribute_type_as_dynamodb_would(runtime: LocalRuntime) -> None:
    """The runtime reads TransactWriteItems bodies as JSON (but for binary values): each type survives."""
    client, table = runtime.client(), table_name()
    item = {
        **key("T"),
        "s": {"S": 'text with "B": inside'},
        "n": {"N": "12.50"},
        "m": {"M": {"B": {"S": "a map key named B"}, "l": {"L": [{"N": "1"}, {"BOOL": True}, {"NULL": True}]}}},
        "ss": {"SS": ["a", "b"]},
        "b": {"B": b"\x00\xffbytes"},
        "bs": {"BS": [b"\x01", b"\x02"]},
    }
    for attrs in ({k: v for k, v in item.items() if k not in ("b", "bs")}, item):  # JSON path, then binary path
        client.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": attrs}}])
        stored = client.get_item(TableName=table, Key=key("T"), ConsistentRead=True)["Item"]
        assert {k: (sorted(v["SS"]) if "SS" in v else v) for k, v in stored.items()} == {
            k: (sorted(v["SS"]) if "SS" in v else v) for k, v in attrs.items()
        }
