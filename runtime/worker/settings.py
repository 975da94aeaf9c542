"""The worker's own settings (``STRATOFLOW_WORKER_*``); heartbeats and graces are in
``runtime.settings`` (``STRATOFLOW_HEARTBEAT_SECONDS``, ``..._CANCEL_GRACE_SECONDS`` ...)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """Every field maps to ``STRATOFLOW_WORKER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="STRATOFLOW_WORKER_", extra="ignore")

    poll_wait_seconds: int = Field(
        default=20, ge=0, le=20, description="SQS long-poll wait (WaitTimeSeconds) of each receive"
    )
    cancel_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the worker reads its runs' states to notice a cancellation",
    )
    registration_ttl_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="A worker not heard from for this long is no longer listed",
    )
    registration_interval_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="How often a worker rewrites its registration"
    )
    cache_dir: Path = Field(
        default=Path.home() / ".stratoflow" / "code",
        description="Where code bundles are unpacked (by content hash)",
    )
