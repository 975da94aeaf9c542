"""Settings, read from ``STRATOFLOW_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.limits import (
    DEFAULT_RETENTION_DAYS,
    INLINE_RESULT_DEFAULT_BYTES,
    INLINE_RESULT_MAX_BYTES,
)


class Settings(BaseSettings):
    """Stratoflow's configuration; every field maps to ``STRATOFLOW_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="STRATOFLOW_", extra="ignore")

    prefix: str = Field(
        default="stratoflow",
        pattern=r"^[a-z][a-z0-9-]{1,30}$",
        description="Prefix of every table, queue, bucket and bus name",
    )
    api_url: str | None = Field(default=None, description="Talk to this API instead of AWS")
    region: str | None = Field(default=None, description="AWS region (else boto3's default)")
    inline_result_max_bytes: int = Field(
        default=INLINE_RESULT_DEFAULT_BYTES,
        ge=0,
        le=INLINE_RESULT_MAX_BYTES,
        description="Larger results go to S3 (at most 65536: a run item holds 400 KB)",
    )
    lease_seconds: float = Field(default=60.0, gt=0, description="Concurrency lease duration")
    task_runner_max_workers: int = Field(
        default=32, ge=1, le=1024, description="Threads of the default task runner"
    )
    results_bucket: str | None = Field(
        default=None, description="Results bucket name (default: <prefix>-results)"
    )
    logging_level: str = Field(default="INFO", description="Console level of run logs")
    payload_key_file: Path | None = Field(
        default=None,
        description="File holding the key that authenticates pickled payloads "
        "(default: ~/.stratoflow/payload-keys/<prefix>.key locally; see runtime/payload_auth.py)",
    )
    payload_key_secret: str | None = Field(
        default=None,
        description="Secrets Manager secret holding that key (in AWS: <prefix>/payload-key)",
    )
    retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS,
        ge=1,
        le=3650,
        description="Days finished runs and log lines are kept before DynamoDB's TTL removes them",
    )
    cache_lock_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Lease of a cache compute lock; its holder renews it every third of it",
    )
    heartbeat_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often a worker heartbeats a running flow run (run item and message)",
    )
    heartbeat_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="A RUNNING flow run whose heartbeat is older than this is CRASHED by the "
        "sweep; also the lease time of its pool/deployment concurrency slots",
    )
    cancel_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Seconds a cancelled run's process gets after SIGTERM before SIGKILL",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Seconds a stopping worker lets running flows finish before handing them back",
    )
    pool_max_receive_count: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Receives of a work-pool message before SQS moves it to the pool's DLQ",
    )
    paused_retry_seconds: float = Field(
        default=5.0,
        gt=0,
        le=900,
        description="How long a run of a paused pool or deployment stays hidden in its queue "
        "before a worker looks at it again",
    )
    slots_retry_seconds: float = Field(
        default=1.0,
        gt=0,
        le=900,
        description="How long a run waiting for a pool or deployment concurrency slot "
        "(collision strategy ENQUEUE) stays hidden before a worker tries again",
    )

    def backend(self) -> Literal["api", "aws", "embedded"]:
        """Which backend the SDK and engine use (docs/architecture.md, "Backends")."""
        if self.api_url:
            return "api"
        if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("STRATOFLOW_PREFIX"):
            return "aws"
        return "embedded"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after env changes)."""
    return Settings()
