"""The admin accounts API handler, called in-process with real-shaped API Gateway REST proxy events (moto below)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.local.runtime import LocalRuntime
from alluse.application.audit import AuditService
from alluse.application.clock import SystemClock
from alluse.application.configuration import ConfigurationService
from functions.accounts_api import handler

ADMIN = "/api/v1/admin"
ADMIN_ARN = "arn:aws:iam::123456789012:user/alice"


@dataclass
class FakeLambdaContext:
    function_name: str = "alluse-accounts-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:alluse-accounts-api"
    aws_request_id: str = "lambda-request-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def rest_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    raw_body: str | None = None,
    user_arn: str | None = ADMIN_ARN,
    principal_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API proxy-integration event, as API Gateway sends it (stage `prod`)."""
    parts = path.removeprefix(ADMIN).strip("/").split("/")
    path_parameters = {"account_id": parts[1]} if len(parts) > 1 and parts[0] == "accounts" else None
    resource = ADMIN + "/" + "/".join("{account_id}" if i == 1 and path_parameters else p for i, p in enumerate(parts))
    request_id = str(uuid.uuid4())
    authorizer = {"principalId": principal_id} if principal_id else None
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", "Host": "api.example.com", **(headers or {})},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": request_id,
            "accountId": "123456789012",
            "apiId": "abc123",
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": 1_795_000_000_000,
            "identity": {"sourceIp": "203.0.113.7", "userArn": user_arn, "user": None, "accessKey": None},
            "authorizer": authorizer,
        },
        "body": raw_body if raw_body is not None else (None if body is None else json.dumps(body)),
        "isBase64Encoded": False,
    }


def call(method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
    response = handler.lambda_handler(rest_event(method, path, body, **kwargs), FakeLambdaContext())
    return Reply(response["statusCode"], json.loads(response["body"]), response.get("headers") or {})


def refused(reply: Reply, status: int, *, field: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body
    body: dict[str, Any] = reply.body
    assert set(body) >= {"error", "field", "message", "problems"}, body
    assert body["problems"], body
    if field is not None:
        assert body["field"] == field, body
    return body


@pytest.fixture(autouse=True)
def api(runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # the Lambda runtime sets it; the moto table lives here
    handler.reset()
    yield runtime
    handler.reset()


def create(capital: str = "500000", **fields: Any) -> dict[str, Any]:
    reply = call("POST", f"{ADMIN}/accounts", {"capital": capital, **fields})
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


# --- accounts ----------------------------------------------------------------------------------


def test_create_returns_201_with_exact_sleeves_in_cents() -> None:
    account = create("500000.00", name="Alpha")
    assert account["account_id"] == "ACC-00001"
    assert account["status"] == "PENDING_BROKER_LINK"
    sleeves = account["sleeves"]
    assert list(sleeves) == ["GEN", "REV", "COM", "STARLAB"]
    assert sleeves["GEN"]["cash"] == {"cents": 20_000_000, "formatted": "$200,000.00"}
    assert sleeves["GEN"]["buffer"]["cents"] == 1_000_000
    assert sleeves["REV"]["cash"]["cents"] == 15_000_000
    assert sleeves["COM"]["cash"]["cents"] == 15_000_000
    assert sleeves["STARLAB"]["cash"]["cents"] == 0
    assert account["cash"] == {"cents": 50_000_000, "formatted": "$500,000.00"}


def test_list_and_get_show_each_account_with_its_movements_only() -> None:
    first = create("500000")["account_id"]
    second = create("100000", account_id="ACC-B")["account_id"]
    listed = call("GET", f"{ADMIN}/accounts")
    assert listed.status == 200
    assert [a["account_id"] for a in listed.body["accounts"]] == [first, second]

    call("POST", f"{ADMIN}/accounts/{second}/deposits", {"amount": "1000"})
    detail = call("GET", f"{ADMIN}/accounts/{first}")
    assert detail.status == 200
    assert detail.body["account_id"] == first
    assert [m["kind"] for m in detail.body["movements"]] == ["DEPOSIT"]
    assert {m["movement_id"].rsplit("-", 1)[0] for m in detail.body["movements"]} == {first}
    assert detail.body["movements"][0]["amount"]["cents"] == 50_000_000


def test_deposit_and_withdraw_move_exact_cents() -> None:
    account_id = create("500000")["account_id"]
    deposited = call("POST", f"{ADMIN}/accounts/{account_id}/deposits", {"amount": "100000.10", "reason": "top-up"})
    assert deposited.status == 200, deposited.body
    assert deposited.body["cash"]["cents"] == 60_000_010
    withdrawn = call("POST", f"{ADMIN}/accounts/{account_id}/withdrawals", {"amount": "1000.50"})
    assert withdrawn.status == 200, withdrawn.body
    assert withdrawn.body["cash"] == {"cents": 59_899_960, "formatted": "$598,999.60"}
    movements = call("GET", f"{ADMIN}/accounts/{account_id}").body["movements"]
    assert [(m["kind"], m["amount"]["cents"]) for m in movements] == [
        ("DEPOSIT", 50_000_000),
        ("DEPOSIT", 10_000_010),
        ("WITHDRAWAL", 100_050),
    ]
    assert movements[1]["reason"] == "top-up"


def test_withdrawal_beyond_free_cash_is_422() -> None:
    account_id = create("1000")["account_id"]
    body = refused(call("POST", f"{ADMIN}/accounts/{account_id}/withdrawals", {"amount": "1000"}), 422, field="amount")
    assert body["error"] == "INSUFFICIENT_FUNDS"
    assert call("GET", f"{ADMIN}/accounts/{account_id}").body["cash"]["cents"] == 100_000


def test_amounts_that_are_not_positive_whole_cents_are_refused() -> None:
    account_id = create("1000")["account_id"]
    for amount in ["-5", "1.234", "0", "abc", "NaN"]:
        for route in ("deposits", "withdrawals"):
            reply = call("POST", f"{ADMIN}/accounts/{account_id}/{route}", {"amount": amount})
            refused(reply, 422, field="amount")
    refused(call("POST", f"{ADMIN}/accounts", {"capital": "-500000"}), 422, field="capital")
    assert len(call("GET", f"{ADMIN}/accounts/{account_id}").body["movements"]) == 1
    assert len(call("GET", f"{ADMIN}/accounts").body["accounts"]) == 1


def test_json_numbers_are_not_money() -> None:
    body = refused(call("POST", f"{ADMIN}/accounts", raw_body='{"capital": 500000.5}'), 422, field="capital")
    assert body["error"] == "VALIDATION_FAILED"
    assert call("GET", f"{ADMIN}/accounts").body["accounts"] == []


def test_link_broker_then_duplicate_brokerage_id_is_409_naming_the_owner() -> None:
    owner = create()["account_id"]
    other = create()["account_id"]
    linked = call("POST", f"{ADMIN}/accounts/{owner}/broker-link", {"brokerage_id": "DU1234567"})
    assert linked.status == 200, linked.body
    assert linked.body["status"] == "ACTIVE" and linked.body["brokerage_id"] == "DU1234567"
    body = refused(
        call("POST", f"{ADMIN}/accounts/{other}/broker-link", {"brokerage_id": "DU1234567"}), 409, field="brokerage_id"
    )
    assert body["error"] == "CONFLICT" and owner in body["message"]
    assert call("GET", f"{ADMIN}/accounts/{other}").body["status"] == "PENDING_BROKER_LINK"


def test_unknown_account_or_route_is_404() -> None:
    for method, path, body in [
        ("GET", f"{ADMIN}/accounts/ACC-99999", None),
        ("POST", f"{ADMIN}/accounts/ACC-99999/deposits", {"amount": "10"}),
        ("GET", f"{ADMIN}/accounts/ACC-99999/config", None),
        ("GET", f"{ADMIN}/accounts/ACC-99999/audit/verify", None),
    ]:
        assert refused(call(method, path, body), 404, field="account_id")["error"] == "NOT_FOUND"
    assert refused(call("GET", f"{ADMIN}/nowhere"), 404)["error"] == "NO_ROUTE"
    refused(call("DELETE", f"{ADMIN}/accounts"), 404)


def test_merged_account_cannot_become_active_again() -> None:
    account_id = create(brokerage_id="DU7654321")["account_id"]
    merged = call("POST", f"{ADMIN}/accounts/{account_id}/status", {"status": "MERGED", "reason": "folded into parent"})
    assert merged.status == 200 and merged.body["status"] == "MERGED"
    body = refused(
        call("POST", f"{ADMIN}/accounts/{account_id}/status", {"status": "ACTIVE", "reason": "undo"}),
        409,
        field="status",
    )
    assert body["error"] == "ILLEGAL_TRANSITION"
    unknown = {"status": "PAUSED", "reason": "x"}
    refused(call("POST", f"{ADMIN}/accounts/{account_id}/status", unknown), 422, field="status")
    refused(call("POST", f"{ADMIN}/accounts/{account_id}/status", {"status": "CLOSED"}), 422, field="reason")


# --- request shape -----------------------------------------------------------------------------


def test_malformed_json_is_400_and_non_json_is_415() -> None:
    body = refused(call("POST", f"{ADMIN}/accounts", raw_body='{"capital": "5'), 400, field="body")
    assert body["error"] == "MALFORMED_JSON" and "character 12" in body["message"]
    assert body["correlation_id"]  # every error carries the API Gateway request id
    reply = call("POST", f"{ADMIN}/accounts", raw_body="capital=5", headers={"Content-Type": "text/plain"})
    refused(reply, 415, field="body")


def test_missing_and_unknown_fields_are_named() -> None:
    missing = refused(call("POST", f"{ADMIN}/accounts", {"name": "no capital"}), 422, field="capital")
    assert "capital: required" in missing["problems"]
    refused(call("POST", f"{ADMIN}/accounts"), 422, field="body")
    unknown = refused(call("POST", f"{ADMIN}/accounts", {"capital": "1000", "captial": "1000"}), 422, field="captial")
    assert "captial: unknown field" in unknown["problems"]
    refused(call("POST", f"{ADMIN}/accounts", ["capital"]), 422)


# --- configuration -----------------------------------------------------------------------------


def test_config_is_served_as_exact_json() -> None:
    config = call("GET", f"{ADMIN}/config")
    assert config.status == 200
    assert config.body["allocation"]["gen"] == "0.40"
    account_id = create(overrides={"allocation": {"gen": "0.50", "rev": "0.20"}})["account_id"]
    assert call("GET", f"{ADMIN}/accounts/{account_id}/config").body["allocation"]["gen"] == "0.50"


def test_config_patch_writes_a_version_authored_by_the_caller() -> None:
    account_id = create()["account_id"]
    reply = call(
        "PATCH",
        f"{ADMIN}/accounts/{account_id}/config",
        {"changes": {"allocation": {"gen": 0.5, "rev": 0.2}}, "reason": "more Gen"},
    )
    assert reply.status == 200, reply.body
    assert reply.body["version"] == 1 and reply.body["author"] == ADMIN_ARN
    assert reply.body["changes"] == {"allocation": {"gen": "0.5", "rev": "0.2"}}  # exact, never float
    assert call("GET", f"{ADMIN}/accounts/{account_id}/config").body["allocation"]["gen"] == "0.5"

    global_reply = call(
        "PATCH", f"{ADMIN}/config", {"changes": {"allocation": {"cash_buffer_pct": "0.06"}}, "reason": "r"}
    )
    assert global_reply.status == 200 and global_reply.body["scope"] == "GLOBAL"


def test_config_patch_with_weights_not_summing_to_one_writes_nothing(runtime: LocalRuntime) -> None:
    account_id = create()["account_id"]
    config = ConfigurationService(runtime.store, SystemClock())
    for path, scope in [(f"{ADMIN}/config", None), (f"{ADMIN}/accounts/{account_id}/config", account_id)]:
        before = call("GET", path).body
        body = refused(
            call("PATCH", path, {"changes": {"allocation": {"gen": "0.9"}}, "reason": "too much"}),
            422,
            field="allocation",
        )
        assert body["error"] == "VALIDATION_FAILED"
        assert any("sum to 1" in p for p in body["problems"])
        assert config.history(scope) == []
        assert call("GET", path).body == before
    no_reason = {"changes": {"allocation": {"gen": "0.5", "rev": "0.2"}}}
    refused(call("PATCH", f"{ADMIN}/config", no_reason), 422, field="reason")
    refused(call("PATCH", f"{ADMIN}/config", {"changes": {}, "reason": "nothing"}), 422, field="changes")
    assert config.history(None) == []


# --- audit and actor ---------------------------------------------------------------------------


def test_actor_from_the_event_identity_is_recorded_and_the_chain_verifies(runtime: LocalRuntime) -> None:
    account_id = create()["account_id"]
    call(
        "POST",
        f"{ADMIN}/accounts/{account_id}/broker-link",
        {"brokerage_id": "DU1111111"},
        user_arn=None,
        principal_id="ops-bob",
    )
    call("POST", f"{ADMIN}/accounts/{account_id}/deposits", {"amount": "5"}, user_arn=None)
    actors = [(r.action, r.actor) for r in AuditService(runtime.store).trail(account_id)]
    assert actors == [
        ("ACCOUNT_CREATED", ADMIN_ARN),
        ("ACCOUNT_FUNDED", ADMIN_ARN),
        ("BROKER_LINKED", "ops-bob"),
        ("STATUS_CHANGED", "ops-bob"),
        ("ACCOUNT_FUNDED", "api"),
    ]
    report = call("GET", f"{ADMIN}/accounts/{account_id}/audit/verify")
    assert report.status == 200
    assert report.body == {"scope": account_id, "ok": True, "checked": 5, "first_broken_seq": None, "problem": None}


# --- failures ----------------------------------------------------------------------------------


def test_unexpected_error_is_500_with_correlation_id_and_no_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(DynamoAccountStore, "list_accounts", boom)
    event = rest_event("GET", f"{ADMIN}/accounts")
    response = handler.lambda_handler(event, FakeLambdaContext())
    body = json.loads(response["body"])
    assert response["statusCode"] == 500
    assert body["error"] == "INTERNAL_ERROR"
    assert body["correlation_id"] == event["requestContext"]["requestId"]
    assert "secret" not in response["body"] and "Traceback" not in response["body"]
