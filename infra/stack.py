"""The ALL-USE stack and the app wiring (stack + cdk-nag) shared by `app.py` and the tests."""

from __future__ import annotations

from aws_cdk import App, CfnOutput, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infra.constants import (
    ACCOUNTS_TABLE_ID,
    STACK_DESCRIPTION,
    STACK_NAME,
    TABLE_NAME_OUTPUT,
    TABLE_STREAM_ARN_OUTPUT,
    TAGS,
)
from infra.constructs.data import AccountsTable


class AllUseStack(Stack):
    """Environment-agnostic: synthesizes offline, with no account, region or context lookup."""

    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, **kwargs: object) -> None:
        kwargs.setdefault("description", STACK_DESCRIPTION)
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]

        self.accounts = AccountsTable(self, ACCOUNTS_TABLE_ID)

        CfnOutput(self, TABLE_NAME_OUTPUT, value=self.accounts.table.table_name)
        CfnOutput(
            self,
            TABLE_STREAM_ARN_OUTPUT,
            value=self.accounts.table.table_stream_arn or "",
        )

        for key, value in TAGS.items():
            Tags.of(self).add(key, value)


def build_app(app: App | None = None) -> tuple[App, AllUseStack, AwsSolutionsChecks]:
    """The app as deployed: the stack, checked by cdk-nag's AwsSolutions pack during synthesis.

    cdk-nag 3.x is a CDK policy-validation plugin (`Validations.of(app).add_plugins`, not the 2.x
    `Aspects`); any unacknowledged finding interrupts `app.synth()`. Acknowledge a finding with
    `Validations.of(construct).acknowledge(Acknowledgment(id=..., reason=...))` — always with a reason.
    """
    app = app or App()
    stack = AllUseStack(app, STACK_NAME)
    checks = AwsSolutionsChecks(app)
    Validations.of(app).add_plugins(checks)
    return app, stack, checks
