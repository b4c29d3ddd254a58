"""The single DynamoDB table, declared from the same spec the local runtime (moto) uses.

`alluse.adapters.dynamo.table.TABLE` is the one definition of keys, index and billing; this construct
translates it to CloudFormation, so the table on AWS and the table in the embedded runtime cannot drift.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from alluse.adapters.dynamo.table import TABLE, TableSpec


def _string_attribute(spec: TableSpec, name: str) -> dynamodb.Attribute:
    # The spec declares every key attribute as a string (AttributeType "S" in `create_table_kwargs`).
    if name not in spec.string_attributes:
        raise ValueError(f"key attribute {name!r} is not declared by the table spec")
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class AccountsTable(Construct):
    """The platform's one table (accounts, cash, configuration, audit), partitioned by account key.

    `dynamodb.Table` (AWS::DynamoDB::Table) rather than `TableV2` (AWS::DynamoDB::GlobalTable): its
    CloudFormation shape mirrors boto3 `create_table`, and cdk-nag's AwsSolutions-DDB3 (PITR) rule
    only inspects AWS::DynamoDB::Table, so the check is real rather than vacuous.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: TableSpec = TABLE,
        table_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        index = spec.accounts_index
        self.table = dynamodb.Table(
            self,
            "Table",
            # None: CloudFormation generates a unique name, handed to functions as ALLUSE_TABLE_NAME.
            table_name=table_name,
            partition_key=_string_attribute(spec, spec.partition_key),
            sort_key=_string_attribute(spec, spec.sort_key),
            billing_mode=dynamodb.BillingMode(spec.billing_mode),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=spec.point_in_time_recovery,
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
            # The fork / merge / reinvest watchdogs will consume this stream (ARCHITECTURE.md §2);
            # they need both images to see what changed in an account record.
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
        )
        # Sparse index: only account records carry its keys, so listing accounts is a Query, never a Scan.
        self.table.add_global_secondary_index(
            index_name=index.name,
            partition_key=_string_attribute(spec, index.partition_key),
            sort_key=_string_attribute(spec, index.sort_key),
            projection_type=dynamodb.ProjectionType.ALL,
        )
