"""The AWS-backed stores, and :class:`Stores`, which connects them all at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from runtime.resources import ResourceSpecs, provision, specs
from runtime.results import ResultStore
from runtime.settings import get_settings
from runtime.stores.cache import CacheStore
from runtime.stores.concurrency import ConcurrencyStore
from runtime.stores.dynamo import Dynamo
from runtime.stores.logs import LogStore
from runtime.stores.queues import QueueStore
from runtime.stores.registry import RegistryStore
from runtime.stores.runs import RunStore


def aws_session(region: str | None = None) -> Any:
    """A boto3 session (region from settings, else boto3's own default chain)."""
    import boto3

    return boto3.session.Session(region_name=region)


def client_config() -> Any:
    """botocore config shared by every client: big connection pool, standard retries."""
    from botocore.config import Config

    # Requests are built by this code, never by users: botocore's per-request parameter
    # validation only costs time on the engine's hot path.
    return Config(
        parameter_validation=False,
        max_pool_connections=64,
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=30,
    )


@contextmanager
def _explained() -> Iterator[None]:
    """Configuration errors (no region, unreachable endpoint) as one clear AwsUnavailable."""
    from runtime.stores.connection import explain_aws_error

    try:
        yield
    except Exception as exc:
        unavailable = explain_aws_error(exc)
        if unavailable is None:
            raise
        raise unavailable from None


@dataclass
class Stores:
    """Every store of one Stratoflow installation, sharing one set of AWS clients."""

    specs: ResourceSpecs
    db: Dynamo
    runs: RunStore
    concurrency: ConcurrencyStore
    cache: CacheStore
    logs: LogStore
    registry: RegistryStore
    results: ResultStore
    session: Any
    queues: QueueStore

    @classmethod
    def connect(
        cls,
        prefix: str = "stratoflow",
        *,
        session: Any = None,
        endpoint_url: str | None = None,
        results_bucket: str | None = None,
        inline_result_max_bytes: int = 16_384,
        serialize_requests: bool = False,
        provision_resources: bool = False,
        retention_days: int | None = None,
    ) -> Stores:
        """Connect to the installation named ``prefix`` at boto3's configured endpoint.

        ``serialize_requests`` runs DynamoDB requests one at a time: needed against an
        in-process moto backend, whose conditional writes are not atomic under threads.
        ``provision_resources`` creates missing tables and buckets first.
        ``endpoint_url`` overrides boto3's configured endpoint for these clients only.
        ``retention_days`` (default: ``STRATOFLOW_RETENTION_DAYS``, 30) is how long
        finished runs and log lines are kept.
        """
        if retention_days is None:
            retention_days = get_settings().retention_days
        session = session or aws_session()
        resource_specs = specs(prefix, results_bucket)
        from botocore.config import Config

        config = client_config()
        with _explained():
            if provision_resources:
                provision(resource_specs, session, endpoint_url=endpoint_url)
            ddb = session.client("dynamodb", config=config, endpoint_url=endpoint_url)
        db = Dynamo(ddb, serialize_requests=serialize_requests)
        with _explained():
            # SigV4 for the presigned result URLs too (botocore may presign S3 with SigV2)
            s3_config = config.merge(Config(signature_version="s3v4"))
            s3 = session.client("s3", config=s3_config, endpoint_url=endpoint_url)
            # a long poll waits 20 s: the read timeout must outlast it
            sqs_config = config.merge(Config(read_timeout=30 + 20))
            sqs = session.client("sqs", config=sqs_config, endpoint_url=endpoint_url)
        return cls(
            specs=resource_specs,
            db=db,
            runs=RunStore(db, resource_specs.runs, retention_days=retention_days),
            concurrency=ConcurrencyStore(db, resource_specs.concurrency),
            cache=CacheStore(db, resource_specs.cache),
            logs=LogStore(db, resource_specs.logs, retention_days),
            registry=RegistryStore(db, resource_specs.registry),
            results=ResultStore(s3, resource_specs.results.name, inline_result_max_bytes),
            session=session,
            queues=QueueStore(sqs, prefix, max_receive_count=get_settings().pool_max_receive_count),
        )


__all__ = [
    "CacheStore",
    "ConcurrencyStore",
    "Dynamo",
    "LogStore",
    "QueueStore",
    "RegistryStore",
    "ResultStore",
    "RunStore",
    "Stores",
]
