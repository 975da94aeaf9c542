"""Response models (Prefect's ``prefect.client.schemas.responses``) for limits."""

from __future__ import annotations

from runtime.models import ConcurrencyLimit

GlobalConcurrencyLimitResponse = ConcurrencyLimit
"""What ``read_global_concurrency_limit_by_name`` returns: ``id``, ``name``, ``limit``,
``active``, ``active_slots``, ``slot_decay_per_second``, ``created``, ``updated``."""

__all__ = ["GlobalConcurrencyLimitResponse"]
