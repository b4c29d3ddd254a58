"""Admin accounts API: API Gateway (REST, proxy integration) → Lambda.

Each route parses its request, calls one use case and shapes the response; the rules live in
`alluse.domain`. Every expected error is a 4xx with one JSON shape:
{"error": code, "field": name, "message": text, "problems": [...]}.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, partial
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from alluse.adapters.dynamo import models as dynamo_models
from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.dynamo.table import table_name
from alluse.application.accounts import AccountService, NewAccount
from alluse.application.audit import AuditService
from alluse.application.clock import SystemClock
from alluse.application.configuration import ConfigChange, ConfigurationService
from alluse.domain.errors import (
    AllUseError,
    Conflict,
    IllegalTransition,
    InsufficientFunds,
    NotFound,
    ValidationFailed,
)
from alluse.domain.money import parse_dollars
from functions.accounts_api.models import (
    AccountDetail,
    AccountList,
    AccountOut,
    BrokerLinkRequest,
    CashMovementRequest,
    ChainReportOut,
    ConfigChangeRequest,
    ConfigVersionOut,
    CreateAccountRequest,
    ErrorBody,
    StatusChangeRequest,
)

SERVICE = "alluse-accounts-api"
PREFIX = "/api/v1/admin"
DEFAULT_ACTOR = "api"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="ALLUSE", service=SERVICE)
tracer = Tracer(service=SERVICE)
# JSON numbers become Decimal, never float: a stray 0.1 in a configuration change stays exact.
app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=partial(json.loads, parse_float=Decimal))


# --- wiring (once per cold start) --------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    accounts: AccountService
    config: ConfigurationService
    audit: AuditService


@cache
def platform() -> Platform:
    dynamo_models.configure(table=table_name(), region=os.environ.get("AWS_REGION"))
    store = DynamoAccountStore()
    clock = SystemClock()
    return Platform(AccountService(store, clock), ConfigurationService(store, clock), AuditService(store))


def reset() -> None:
    """Forget the wiring (tests: a new moto per test; the next call configures the models again)."""
    platform.cache_clear()


def actor() -> str:
    """Who calls: the IAM caller, else the authorizer's principal; recorded in the audit trail."""
    context = app.current_event.request_context
    return context.identity.user_arn or context.authorizer.principal_id or DEFAULT_ACTOR


# --- accounts ----------------------------------------------------------------------------------


@app.get(f"{PREFIX}/accounts")
def list_accounts() -> AccountList:
    return AccountList(accounts=[AccountOut.of(a) for a in platform().accounts.list_accounts()])


@app.post(f"{PREFIX}/accounts", status_code=HTTPStatus.CREATED)
def create_account(body: Annotated[CreateAccountRequest, Body()]) -> AccountOut:
    request = NewAccount(
        capital_cents=parse_dollars(body.capital, field="capital"),
        name=body.name,
        brokerage_id=body.brokerage_id,
        account_id=body.account_id,
        overrides=body.overrides,
    )
    account = platform().accounts.create(request, actor=actor())
    metrics.add_metric(name="AccountCreated", unit=MetricUnit.Count, value=1)
    return AccountOut.of(account)


@app.get(f"{PREFIX}/accounts/<account_id>")
def get_account(account_id: str) -> AccountDetail:
    accounts = platform().accounts
    return AccountDetail.of_history(accounts.get(account_id), accounts.movements(account_id))


@app.post(f"{PREFIX}/accounts/<account_id>/broker-link")
def link_broker(account_id: str, body: Annotated[BrokerLinkRequest, Body()]) -> AccountOut:
    account = platform().accounts.link_broker(account_id, body.brokerage_id, actor=actor())
    metrics.add_metric(name="BrokerLinked", unit=MetricUnit.Count, value=1)
    return AccountOut.of(account)


@app.post(f"{PREFIX}/accounts/<account_id>/deposits")
def deposit(account_id: str, body: Annotated[CashMovementRequest, Body()]) -> AccountOut:
    cents = parse_dollars(body.amount, field="amount")
    account = platform().accounts.deposit(account_id, cents, actor=actor(), reason=body.reason)
    metrics.add_metric(name="Deposit", unit=MetricUnit.Count, value=1)
    return AccountOut.of(account)


@app.post(f"{PREFIX}/accounts/<account_id>/withdrawals")
def withdraw(account_id: str, body: Annotated[CashMovementRequest, Body()]) -> AccountOut:
    cents = parse_dollars(body.amount, field="amount")
    account = platform().accounts.withdraw(account_id, cents, actor=actor(), reason=body.reason)
    metrics.add_metric(name="Withdrawal", unit=MetricUnit.Count, value=1)
    return AccountOut.of(account)


@app.post(f"{PREFIX}/accounts/<account_id>/status")
def change_status(account_id: str, body: Annotated[StatusChangeRequest, Body()]) -> AccountOut:
    account = platform().accounts.change_status(account_id, body.status, actor=actor(), reason=body.reason)
    metrics.add_metric(name="StatusChanged", unit=MetricUnit.Count, value=1)
    return AccountOut.of(account)


# --- configuration -----------------------------------------------------------------------------


@app.get(f"{PREFIX}/config")
def global_config() -> dict[str, Any]:
    return platform().config.effective().model_dump(mode="json")


@app.get(f"{PREFIX}/accounts/<account_id>/config")
def account_config(account_id: str) -> dict[str, Any]:
    return platform().config.effective(account_id).model_dump(mode="json")


@app.patch(f"{PREFIX}/config")
def change_global_config(body: Annotated[ConfigChangeRequest, Body()]) -> ConfigVersionOut:
    return _change_config(body, account_id=None)


@app.patch(f"{PREFIX}/accounts/<account_id>/config")
def change_account_config(account_id: str, body: Annotated[ConfigChangeRequest, Body()]) -> ConfigVersionOut:
    return _change_config(body, account_id=account_id)


def _change_config(body: ConfigChangeRequest, *, account_id: str | None) -> ConfigVersionOut:
    version = platform().config.change(ConfigChange(body.changes, actor(), body.reason, account_id))
    metrics.add_metric(name="ConfigChanged", unit=MetricUnit.Count, value=1)
    return ConfigVersionOut.of(version)


# --- audit -------------------------------------------------------------------------------------


@app.get(f"{PREFIX}/accounts/<account_id>/audit/verify")
def verify_audit(account_id: str) -> ChainReportOut:
    return ChainReportOut.of(platform().audit.verify(account_id))


# --- errors ------------------------------------------------------------------------------------

_STATUS_OF: tuple[tuple[type[AllUseError], HTTPStatus], ...] = (
    (ValidationFailed, HTTPStatus.UNPROCESSABLE_ENTITY),
    (InsufficientFunds, HTTPStatus.UNPROCESSABLE_ENTITY),
    (NotFound, HTTPStatus.NOT_FOUND),
    (Conflict, HTTPStatus.CONFLICT),
    (IllegalTransition, HTTPStatus.CONFLICT),
)


def _error(status: HTTPStatus, body: ErrorBody) -> Response[str]:
    body.correlation_id = logger.get_correlation_id()  # the API Gateway request id, also on every log line
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body.model_dump_json())


@app.exception_handler(AllUseError)  # type: ignore[untyped-decorator]  # Powertools leaves it unannotated
def refused(error: AllUseError) -> Response[str]:
    status = next((s for kind, s in _STATUS_OF if isinstance(error, kind)), HTTPStatus.BAD_REQUEST)
    problems = error.problems if isinstance(error, ValidationFailed) else [str(error)]
    return _error(status, ErrorBody(error=error.code, field=error.field, message=str(error), problems=problems))


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def malformed_request(error: RequestValidationError) -> Response[str]:
    details = list(error.errors())
    invalid_json = next((d for d in details if d.get("type") == "json_invalid"), None)
    if invalid_json is not None:
        reason = invalid_json.get("ctx", {}).get("error", "cannot be parsed")
        message = f"request body is not valid JSON: {reason} (character {invalid_json['loc'][-1]})"
        return _error(
            HTTPStatus.BAD_REQUEST, ErrorBody(error="MALFORMED_JSON", field="body", message=message, problems=[message])
        )
    fields = [_field_of(d) for d in details]
    problems = [f"{field}: {_problem_of(d)}" for field, d in zip(fields, details, strict=True)]
    body = ErrorBody(
        error=ValidationFailed.code, field=fields[0] if fields else None, message="; ".join(problems), problems=problems
    )
    return _error(HTTPStatus.UNPROCESSABLE_ENTITY, body)


def _field_of(detail: dict[str, Any]) -> str:
    # loc is ("body", "capital") for a body field, ("body",) for the body as a whole
    loc = [str(part) for part in detail.get("loc", ())]
    return ".".join(loc[1:]) or (loc[0] if loc else "body")


def _problem_of(detail: dict[str, Any]) -> str:
    if detail.get("type") == "extra_forbidden":
        return "unknown field"
    if detail.get("type") == "missing":
        return "required"
    return str(detail.get("msg", "invalid value"))


@app.exception_handler(RequestUnsupportedContentType)  # type: ignore[untyped-decorator]
def unsupported_content_type(error: RequestUnsupportedContentType) -> Response[str]:
    message = "the request body must be JSON (Content-Type: application/json)"
    return _error(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        ErrorBody(error="UNSUPPORTED_CONTENT_TYPE", field="body", message=message, problems=[message]),
    )


@app.not_found
def no_route(error: NotFoundError) -> Response[str]:
    event = app.current_event
    message = f"no route {event.http_method} {event.path}"
    return _error(HTTPStatus.NOT_FOUND, ErrorBody(error="NO_ROUTE", message=message, problems=[message]))


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def failed(error: Exception) -> Response[str]:
    logger.exception("unexpected error")
    message = f"internal error; quote correlation id {logger.get_correlation_id()}"
    return _error(
        HTTPStatus.INTERNAL_SERVER_ERROR, ErrorBody(error="INTERNAL_ERROR", message=message, problems=[message])
    )


# --- entry point -------------------------------------------------------------------------------

# One outcome metric per request: refusals and failures can alarm, and a flush is never empty.
_OUTCOME = {2: "RequestSucceeded", 4: "RequestRefused"}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = app.resolve(event, context)
    outcome = _OUTCOME.get(response["statusCode"] // 100, "RequestFailed")
    metrics.add_metric(name=outcome, unit=MetricUnit.Count, value=1)
    return response
