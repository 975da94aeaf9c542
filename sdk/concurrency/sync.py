"""``with concurrency(...)`` and ``rate_limit(...)`` for synchronous code (Prefect's
``prefect.concurrency.sync``).

>>> from sdk.concurrency.sync import concurrency, rate_limit
>>> with concurrency("database", occupy=1):
...     run_query()
>>> rate_limit("rate-limited-api")   # blocks until a slot of the decaying limit is free
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sdk.concurrency._core import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    acquire,
    as_names,
    check_lease_duration,
    release,
)

RATE_LIMIT_LEASE_SECONDS = 60.0
"""What a rate-limit grant asks for: its lease expires when its slots drain anyway."""

__all__ = [
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "concurrency",
    "rate_limit",
]


@contextmanager
def concurrency(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = 300,
    strict: bool = False,
    holder: Any = None,
    raise_on_lease_renewal_failure: bool | None = None,
) -> Iterator[None]:
    """Hold ``occupy`` slots on every named global concurrency limit while the block runs.

    Blocks until the slots are free (at most ``timeout_seconds``: then
    :class:`AcquireConcurrencySlotTimeoutError`, a ``TimeoutError``; at most
    ``max_retries`` retries: then :class:`ConcurrencySlotAcquisitionError`). The
    slots are held on a lease of ``lease_duration`` seconds (60 to 86400), renewed
    in the background while the block runs and released when it exits, whatever
    way it exits; if the process dies, the lease expires and the slots come back.
    Limits that do not exist are skipped with a warning (an error with
    ``strict=True``); inactive limits are not enforced. ``holder`` (Prefect's
    ``{"type": ..., "id": ...}``) names who holds the slots: by default the
    current task or flow run. A lease renewal that fails is reported on stderr
    and renewal goes on (``raise_on_lease_renewal_failure`` is accepted for
    Prefect compatibility; execution is not interrupted).
    """
    del raise_on_lease_renewal_failure  # see the docstring
    limit_names = as_names(names)
    if not limit_names:
        yield
        return
    check_lease_duration(limit_names, lease_duration)
    client, lease = acquire(
        limit_names,
        occupy,
        mode="concurrency",
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
        lease_duration=lease_duration,
        strict=strict,
        holder=holder,
    )
    try:
        yield
    finally:
        release(client, lease)


def rate_limit(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Block until ``occupy`` slots of every named limit are free, and take them for good.

    The limits must have ``slot_decay_per_second`` > 0 (else
    :class:`ConcurrencySlotAcquisitionError`): the slots come back by themselves,
    one every ``1 / slot_decay_per_second`` seconds, so calls are spaced out at
    that rate after a first burst of ``limit``. Missing limits are skipped with a
    warning (an error with ``strict=True``).
    """
    limit_names = as_names(names)
    if not limit_names:
        return
    acquire(
        limit_names,
        occupy,
        mode="rate_limit",
        timeout_seconds=timeout_seconds,
        max_retries=None,
        lease_duration=RATE_LIMIT_LEASE_SECONDS,
        strict=strict,
        holder=None,
    )
