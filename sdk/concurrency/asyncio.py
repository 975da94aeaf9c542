"""``async with concurrency(...)`` and ``await rate_limit(...)`` (Prefect's
``prefect.concurrency.asyncio``).

The wait for slots runs in a daemon thread, so the event loop keeps running. If
the awaiting task is cancelled while it waits, the wait stops and any lease that
was granted meanwhile is released at once, never left to be renewed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sdk.concurrency._core import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    acquire,
    as_names,
    check_lease_duration,
    engine_client,
    release,
)

if TYPE_CHECKING:
    from runtime.engine.client import EngineClient
    from runtime.models import Lease

__all__ = [
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "concurrency",
    "rate_limit",
]

_T = TypeVar("_T")


def _in_thread(fn: Callable[[], _T]) -> concurrent.futures.Future[_T]:
    """Run ``fn`` in a daemon thread (never holding up interpreter exit)."""
    future: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="stratoflow-concurrency-wait", daemon=True).start()
    return future


async def _acquire(
    names: list[str],
    occupy: int,
    *,
    mode: Literal["concurrency", "rate_limit"],
    timeout_seconds: float | None,
    max_retries: int | None,
    lease_duration: float,
    strict: bool,
    holder: Any,
) -> tuple[EngineClient, Lease]:
    client = engine_client()  # in the caller's context (its flow run's client)
    from sdk.concurrency._core import holder_of

    named = holder_of(holder)
    cancelled = threading.Event()
    future = _in_thread(
        lambda: acquire(
            names,
            occupy,
            mode=mode,
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            lease_duration=lease_duration,
            strict=strict,
            holder=named,
            client=client,
            cancelled=cancelled,
        )
    )
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        cancelled.set()

        def release_if_granted(done: concurrent.futures.Future[tuple[EngineClient, Lease]]) -> None:
            if not done.cancelled() and done.exception() is None and mode == "concurrency":
                release(*done.result())

        future.add_done_callback(release_if_granted)
        raise


@asynccontextmanager
async def concurrency(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = 300,
    strict: bool = False,
    holder: Any = None,
    raise_on_lease_renewal_failure: bool | None = None,
) -> AsyncIterator[None]:
    """The ``async with`` form of :func:`sdk.concurrency.sync.concurrency` (same arguments)."""
    del raise_on_lease_renewal_failure
    limit_names = as_names(names)
    if not limit_names:
        yield
        return
    check_lease_duration(limit_names, lease_duration)
    client, lease = await _acquire(
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
        # in a thread the task's cancellation cannot stop: the slots are always given back
        await asyncio.shield(asyncio.wrap_future(_in_thread(lambda: release(client, lease))))


async def rate_limit(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """The awaitable form of :func:`sdk.concurrency.sync.rate_limit` (same arguments)."""
    limit_names = as_names(names)
    if not limit_names:
        return
    await _acquire(
        limit_names,
        occupy,
        mode="rate_limit",
        timeout_seconds=timeout_seconds,
        max_retries=None,
        lease_duration=60.0,
        strict=strict,
        holder=None,
    )
