"""Object models (Prefect's ``prefect.client.schemas.objects``) for limits and their leases.

A task-tag limit and a global limit are one model here,
:class:`runtime.models.ConcurrencyLimit`: it has the global limit's attribute
names and the tag limit's (``tag``, ``concurrency_limit``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from runtime.models import (
    ConcurrencyLimit,
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
    ConcurrencyOptions,
)

GlobalConcurrencyLimit = ConcurrencyLimit
"""Prefect's name for a global concurrency limit object."""

__all__ = [
    "ConcurrencyLeaseHolder",
    "ConcurrencyLimit",
    "ConcurrencyLimitConfig",
    "ConcurrencyLimitStrategy",
    "ConcurrencyOptions",
    "GlobalConcurrencyLimit",
]


class ConcurrencyLeaseHolder(BaseModel):
    """Who holds a lease: ``concurrency(..., holder=ConcurrencyLeaseHolder(type=..., id=...))``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["flow_run", "task_run", "deployment"]
    id: str
