"""CDK assertions on the synthesized stack, cdk-nag with no unexplained finding, and `python app.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from alluse.adapters.dynamo.table import TABLE
from infra.constants import STACK_NAME, TABLE_NAME_OUTPUT, TAGS
from infra.constructs.data import AccountsTable
from infra.stack import AllUseStack, build_app

REPO = Path(__file__).resolve().parents[2]
TABLE_TYPE = "AWS::DynamoDB::Table"
# What the local runtime (moto) creates: the single source the stack must agree with.
LOCAL = TABLE.create_table_kwargs("unused")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[App, AllUseStack, AwsSolutionsChecks]:
    return build_app(App(outdir=str(tmp_path_factory.mktemp("cdk.out"))))


@pytest.fixture(scope="module")
def template(built: tuple[App, AllUseStack, AwsSolutionsChecks]) -> Template:
    return Template.from_stack(built[1])


@pytest.fixture(scope="module")
def table(template: Template) -> dict[str, Any]:
    tables = template.find_resources(TABLE_TYPE)
    assert len(tables) == 1, "the platform has exactly one table"
    (resource,) = tables.values()
    return resource  # type: ignore[no-any-return]


def _by_name(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def test_keys_match_the_local_runtime(table: dict[str, Any]) -> None:
    props = table["Properties"]
    assert props["KeySchema"] == LOCAL["KeySchema"]
    assert _by_name(props["AttributeDefinitions"], "AttributeName") == _by_name(
        LOCAL["AttributeDefinitions"], "AttributeName"
    )


def test_indexes_match_the_local_runtime(table: dict[str, Any]) -> None:
    deployed = _by_name(table["Properties"]["GlobalSecondaryIndexes"], "IndexName")
    local = _by_name(LOCAL["GlobalSecondaryIndexes"], "IndexName")
    assert deployed.keys() == local.keys() == {TABLE.accounts_index.name}
    for name, index in local.items():
        assert deployed[name]["KeySchema"] == index["KeySchema"]
        assert deployed[name]["Projection"] == index["Projection"]


def test_table_is_on_demand_recoverable_encrypted_streamed_and_retained(template: Template) -> None:
    assert LOCAL["BillingMode"] == TABLE.billing_mode
    template.has_resource(
        TABLE_TYPE,
        {
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "BillingMode": TABLE.billing_mode,
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
                    "SSESpecification": {"SSEEnabled": True},
                    "DeletionProtectionEnabled": True,
                }
            ),
        },
    )


def test_tags_and_table_name_output(template: Template, table: dict[str, Any]) -> None:
    assert {t["Key"]: t["Value"] for t in table["Properties"]["Tags"]} == TAGS
    (logical_id,) = template.find_resources(TABLE_TYPE)
    template.has_output(TABLE_NAME_OUTPUT, {"Value": {"Ref": logical_id}})


def test_cdk_nag_reports_no_unacknowledged_finding(built: tuple[App, AllUseStack, AwsSolutionsChecks]) -> None:
    _app, stack, checks = built
    report = checks.validate_scope(stack)
    findings = [(v.rule_name, v.severity, [r.construct_path for r in v.violating_resources]) for v in report.violations]
    assert findings == []
    assert report.success


def test_every_acknowledged_finding_has_a_reason(built: tuple[App, AllUseStack, AwsSolutionsChecks]) -> None:
    app = built[0]
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    reasons = {
        (node.node.path, rule): reason
        for node in app.node.find_all()
        for entry in node.node.metadata
        if entry.type == key
        for rule, reason in dict(entry.data).items()
    }
    unexplained = [where for where, reason in reasons.items() if len(str(reason).strip()) < 10]
    assert unexplained == []


def test_cdk_nag_checks_the_table_for_real() -> None:
    """The clean report above is not vacuous: the same pack flags a table without PITR."""
    app = App()
    stack = Stack(app, "Probe")
    AccountsTable(stack, "Table", spec=replace(TABLE, point_in_time_recovery=False))
    report = AwsSolutionsChecks().validate_scope(stack)
    assert "AwsSolutions-DDB3" in {v.rule_name for v in report.violations}


def test_app_py_synthesizes_offline(tmp_path: Path) -> None:
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path)}
    # No credentials or region needed: the stack is environment-agnostic; and app.py itself silences
    # jsii's Node 20 end-of-life banner.
    for var in (
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
    ):
        env.pop(var, None)
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "end-of-life" not in done.stderr.lower()
    synthesized = json.loads((tmp_path / f"{STACK_NAME}.template.json").read_text())
    assert [r["Type"] for r in synthesized["Resources"].values()] == [TABLE_TYPE]
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert report["pluginReports"] == []
