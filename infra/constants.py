"""Names shared by the CDK app, its stack and its tests."""

from __future__ import annotations

from typing import Final

PROJECT: Final = "alluse"
STACK_NAME: Final = "AllUse"
STACK_DESCRIPTION: Final = "ALL-USE options-income platform (serverless)"

# Tags applied to every taggable resource in the stack.
TAGS: Final[dict[str, str]] = {"project": PROJECT}

# Construct ids (stable: changing one replaces the resource in CloudFormation).
ACCOUNTS_TABLE_ID: Final = "AccountsTable"

# CfnOutput ids; the output's export-free value is read by operators and the deploy scripts.
TABLE_NAME_OUTPUT: Final = "TableName"
TABLE_STREAM_ARN_OUTPUT: Final = "TableStreamArn"
