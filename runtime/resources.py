"""The one declaration of every AWS resource Stratoflow uses, and local provisioning.

The CDK stack builds its tables and bucket from :func:`specs`, and tests and
``stratoflow dev`` create exactly the same ones with :func:`provision`, against
whatever endpoint boto3 is configured for (moto, LocalStack or AWS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError

KeyType = Literal["S", "N"]


@dataclass(frozen=True)
class Key:
    """A key attribute: its name and DynamoDB scalar type."""

    name: str
    type: KeyType = "S"


Projection = Literal["ALL", "KEYS_ONLY", "INCLUDE"]


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index and what it projects (``include`` names INCLUDE's attributes)."""

    name: str
    partition_key: Key
    sort_key: Key | None = None
    projection: Projection = "ALL"
    include: tuple[str, ...] = ()

    def projection_kwargs(self) -> dict[str, Any]:
        """The index's ``Projection`` in a ``CreateTable`` request."""
        out: dict[str, Any] = {"ProjectionType": self.projection}
        if self.projection == "INCLUDE":
            out["NonKeyAttributes"] = list(self.include)
        return out


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table: keys, global secondary indexes and TTL attribute (on-demand billing)."""

    logical_name: str
    name: str
    partition_key: Key
    sort_key: Key | None = None
    indexes: tuple[IndexSpec, ...] = ()
    ttl_attribute: str | None = None

    def key_names(self, index: str | None = None) -> tuple[str, ...]:
        """Names of the key attributes of the table, or of the table plus the given index."""
        keys = [self.partition_key, self.sort_key]
        if index is not None:
            spec = next(i for i in self.indexes if i.name == index)
            keys += [spec.partition_key, spec.sort_key]
        return tuple(dict.fromkeys(k.name for k in keys if k is not None))

    def create_table_kwargs(self) -> dict[str, Any]:
        """The ``CreateTable`` request for this table."""
        attrs: dict[str, KeyType] = {}
        for key in (self.partition_key, self.sort_key):
            if key:
                attrs[key.name] = key.type
        for index in self.indexes:
            for key in (index.partition_key, index.sort_key):
                if key:
                    attrs[key.name] = key.type

        def schema(pk: Key, sk: Key | None) -> list[dict[str, str]]:
            out = [{"AttributeName": pk.name, "KeyType": "HASH"}]
            if sk:
                out.append({"AttributeName": sk.name, "KeyType": "RANGE"})
            return out

        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": n, "AttributeType": t} for n, t in attrs.items()
            ],
            "KeySchema": schema(self.partition_key, self.sort_key),
        }
        if self.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": i.name,
                    "KeySchema": schema(i.partition_key, i.sort_key),
                    "Projection": i.projection_kwargs(),
                }
                for i in self.indexes
            ]
        return kwargs


@dataclass(frozen=True)
class BucketSpec:
    """An S3 bucket."""

    logical_name: str
    name: str


@dataclass(frozen=True)
class SecretSpec:
    """A Secrets Manager secret whose value is generated at creation (never in code)."""

    logical_name: str
    name: str
    description: str = ""


SQS_NAME_MAX = 80
"""Longest SQS queue name."""

DEFAULT_POOL = "default"
"""The work pool every installation has a queue for from the start."""


@dataclass(frozen=True)
class QueueSpec:
    """An SQS standard queue and its dead-letter queue (a work pool's, see :func:`pool_queue_spec`).

    A message received ``max_receive_count`` times without being deleted moves to the
    DLQ (SQS's redrive policy). ``wait_seconds`` is the long poll of a receive;
    ``visibility_timeout`` how long a received message stays hidden before a worker
    must extend it (its heartbeat) or lose it; retentions are in seconds.
    """

    logical_name: str
    name: str
    dlq_name: str
    visibility_timeout: int = 60
    max_receive_count: int = 5
    wait_seconds: int = 20
    message_retention: int = 1_209_600
    dlq_message_retention: int = 1_209_600

    def queue_attributes(self, dlq_arn: str) -> dict[str, str]:
        """The main queue's ``CreateQueue`` attributes (the redrive names ``dlq_arn``)."""
        import json

        return {
            "VisibilityTimeout": str(self.visibility_timeout),
            "ReceiveMessageWaitTimeSeconds": str(self.wait_seconds),
            "MessageRetentionPeriod": str(self.message_retention),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_receive_count)}
            ),
        }

    def dlq_attributes(self) -> dict[str, str]:
        """The dead-letter queue's ``CreateQueue`` attributes."""
        return {"MessageRetentionPeriod": str(self.dlq_message_retention)}


def pool_queue_spec(prefix: str, pool_name: str, *, max_receive_count: int = 5) -> QueueSpec:
    """The queue of work pool ``pool_name``: ``<prefix>-pool-<pool>`` and ``...-dlq``.

    A name that would pass SQS's 80 characters (with ``-dlq``) keeps its start and
    ends with 8 hex digits of the SHA-256 of the pool's name, so it stays unique.
    """
    import hashlib

    name = f"{prefix}-pool-{pool_name}"
    if len(name) + len("-dlq") > SQS_NAME_MAX:
        digest = hashlib.sha256(pool_name.encode()).hexdigest()[:8]
        name = f"{name[: SQS_NAME_MAX - len('-dlq') - 9]}-{digest}"
    return QueueSpec(
        logical_name=f"pool:{pool_name}",
        name=name,
        dlq_name=f"{name}-dlq",
        max_receive_count=max_receive_count,
    )


def task_run_queue_spec(prefix: str, *, max_receive_count: int = 5) -> QueueSpec:
    """The background-task queue (``task.delay()``, task workers): ``<prefix>-task-runs``."""
    name = f"{prefix}-task-runs"
    return QueueSpec(
        logical_name="task_runs",
        name=name,
        dlq_name=f"{name}-dlq",
        max_receive_count=max_receive_count,
    )


@dataclass(frozen=True)
class ResourceSpecs:
    """Every resource of one Stratoflow installation, named from its prefix."""

    prefix: str
    tables: dict[str, TableSpec] = field(default_factory=dict)
    buckets: dict[str, BucketSpec] = field(default_factory=dict)
    secrets: dict[str, SecretSpec] = field(default_factory=dict)
    queues: dict[str, QueueSpec] = field(default_factory=dict)

    @property
    def default_pool_queue(self) -> QueueSpec:
        """The ``default`` work pool's queue (created by :func:`provision`)."""
        return self.queues[f"pool:{DEFAULT_POOL}"]

    @property
    def task_run_queue(self) -> QueueSpec:
        """The background-task queue (``task.delay()``; created by :func:`provision`)."""
        return self.queues["task_runs"]

    @property
    def runs(self) -> TableSpec:
        """Flow runs and task runs."""
        return self.tables["runs"]

    @property
    def concurrency(self) -> TableSpec:
        """Concurrency limits and their leases."""
        return self.tables["concurrency"]

    @property
    def cache(self) -> TableSpec:
        """Task cache records."""
        return self.tables["cache"]

    @property
    def logs(self) -> TableSpec:
        """Run logs."""
        return self.tables["logs"]

    @property
    def registry(self) -> TableSpec:
        """Deployments, work pools and flows."""
        return self.tables["registry"]

    @property
    def results(self) -> BucketSpec:
        """The results bucket."""
        return self.buckets["results"]

    @property
    def payload_key(self) -> SecretSpec:
        """The key that authenticates pickled payloads (read by the engine, never by the API)."""
        return self.secrets["payload_key"]


def specs(prefix: str = "stratoflow", results_bucket: str | None = None) -> ResourceSpecs:
    """The resource specs for ``prefix``. See docs/data-model.md for every access pattern."""
    runs = TableSpec(
        logical_name="runs",
        name=f"{prefix}-runs",
        partition_key=Key("id"),
        # Keys only: a transition changes no key of these (by_state's moves), so it
        # writes no index but by_state; listings read the runs a page names.
        indexes=(
            IndexSpec("by_kind", Key("kind_shard"), Key("created"), "KEYS_ONLY"),
            IndexSpec("by_flow", Key("flow_name"), Key("created"), "KEYS_ONLY"),
            IndexSpec("by_parent", Key("parent_id"), Key("created"), "KEYS_ONLY"),
            IndexSpec("by_deployment", Key("deployment_id"), Key("created"), "KEYS_ONLY"),
            IndexSpec("by_state", Key("kind_state"), Key("state_timestamp"), "KEYS_ONLY"),
        ),
        ttl_attribute="expires_at",
    )
    concurrency = TableSpec(
        logical_name="concurrency",
        name=f"{prefix}-concurrency",
        partition_key=Key("pk"),
        indexes=(IndexSpec("by_type", Key("item_type"), Key("sort_value")),),
        ttl_attribute="ttl_at",
    )
    cache = TableSpec(
        logical_name="cache",
        name=f"{prefix}-cache",
        partition_key=Key("cache_key"),
        ttl_attribute="ttl_at",
    )
    logs = TableSpec(
        logical_name="logs",
        name=f"{prefix}-logs",
        partition_key=Key("flow_run_id"),
        sort_key=Key("seq"),
        ttl_attribute="expires_at",
    )
    registry = TableSpec(
        logical_name="registry",
        name=f"{prefix}-registry",
        partition_key=Key("pk"),
        # keys only: a deployment of up to 300 KB is not written twice on every change
        indexes=(IndexSpec("by_type", Key("item_type"), Key("sort_value"), "KEYS_ONLY"),),
        ttl_attribute="ttl_at",
    )
    default_pool = pool_queue_spec(prefix, DEFAULT_POOL)
    task_runs = task_run_queue_spec(prefix)
    return ResourceSpecs(
        prefix=prefix,
        tables={t.logical_name: t for t in (runs, concurrency, cache, logs, registry)},
        queues={default_pool.logical_name: default_pool, task_runs.logical_name: task_runs},
        buckets={"results": BucketSpec("results", results_bucket or f"{prefix}-results")},
        secrets={
            "payload_key": SecretSpec(
                "payload_key",
                f"{prefix}/payload-key",
                "HMAC key of pickled results and cache records (runtime/payload_auth.py)",
            )
        },
    )


def provision(
    resource_specs: ResourceSpecs, session: Any = None, *, endpoint_url: str | None = None
) -> ResourceSpecs:
    """Create every table, bucket, queue and secret of ``resource_specs`` that does not exist yet.

    Idempotent; waits until tables are active and turns TTL on. Uses the endpoint
    boto3 is configured for (``AWS_ENDPOINT_URL``), so it provisions moto,
    LocalStack or a real account alike.
    """
    import boto3

    session = session or boto3.session.Session()
    ddb = session.client("dynamodb", endpoint_url=endpoint_url)
    s3 = session.client("s3", endpoint_url=endpoint_url)
    created: list[str] = []
    for table in resource_specs.tables.values():
        try:
            ddb.create_table(**table.create_table_kwargs())
            created.append(table.name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
    for name in created:
        ddb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
    for table in resource_specs.tables.values():
        if table.ttl_attribute and table.name in created:
            ddb.update_time_to_live(
                TableName=table.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
    for bucket in resource_specs.buckets.values():
        try:
            region = session.region_name or "us-east-1"
            kwargs: dict[str, Any] = {"Bucket": bucket.name}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            s3.create_bucket(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise
    if resource_specs.queues:
        sqs = session.client("sqs", endpoint_url=endpoint_url)
        for queue in resource_specs.queues.values():
            create_queue_pair(sqs, queue)
    if resource_specs.secrets:
        _provision_secrets(
            resource_specs, session.client("secretsmanager", endpoint_url=endpoint_url)
        )
    return resource_specs


def create_queue_pair(sqs: Any, queue: QueueSpec) -> tuple[str, str]:
    """Create ``queue``'s DLQ then the queue redriving to it: ``(url, dlq_url)``.

    Idempotent: ``CreateQueue`` with the same attributes returns the existing queue.
    """
    dlq_url = sqs.create_queue(QueueName=queue.dlq_name, Attributes=queue.dlq_attributes())[
        "QueueUrl"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(QueueName=queue.name, Attributes=queue.queue_attributes(dlq_arn))[
        "QueueUrl"
    ]
    return url, dlq_url


def _provision_secrets(resource_specs: ResourceSpecs, client: Any) -> None:
    """Create each missing secret with a fresh random value (an existing one is kept)."""
    import secrets as random

    for secret in resource_specs.secrets.values():
        try:
            client.create_secret(
                Name=secret.name,
                Description=secret.description,
                SecretString=random.token_hex(32),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceExistsException":
                raise
