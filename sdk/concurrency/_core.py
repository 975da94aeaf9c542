"""What the sync and async ``concurrency``/``rate_limit`` share: arguments, errors, the client.

Slots are taken through the engine client of the calling code (the flow run's,
else the process's), so waiting, lease renewal and release are the ones the task
engine uses for tag limits (:class:`runtime.engine.slots.SlotWaiter`): one waiter
per set of limits polls with backoff, the others are woken by releases in this
process; held leases are renewed in the background until released.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from runtime.engine.exceptions import ConcurrencySlotAcquisitionError
from runtime.engine.slots import SlotRequest, SlotRetriesExhausted, SlotWaitTimeout
from runtime.errors import LimitExceeded, StratoflowError
from runtime.models import Lease

if TYPE_CHECKING:
    from runtime.engine.client import EngineClient

LEASE_MIN_SECONDS = 60.0
LEASE_MAX_SECONDS = 86_400.0
"""Prefect's bounds on ``lease_duration`` (one minute to one day)."""

logger = logging.getLogger("stratoflow.concurrency")

__all__ = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError"]


class AcquireConcurrencySlotTimeoutError(TimeoutError):
    """Raised when acquiring concurrency slots takes longer than ``timeout_seconds``."""


def as_names(names: str | Sequence[str] | None) -> list[str]:
    """``names`` as a list (a single name is one limit)."""
    if not names:
        return []
    return [names] if isinstance(names, str) else list(names)


def holder_of(holder: Any) -> str | None:
    """The lease holder as stored: Prefect's ``{type, id}`` holder, or the current run.

    Inside a task run the holder is ``task_run:<id>``, inside a flow run
    ``flow_run:<id>``; outside any run nobody is named.
    """
    if holder is not None:
        if isinstance(holder, str):
            return holder
        kind = holder["type"] if isinstance(holder, dict) else holder.type
        ident = holder["id"] if isinstance(holder, dict) else holder.id
        return f"{kind}:{ident}"
    from runtime.engine.context import current_flow_run, current_task_run

    task = current_task_run()
    if task is not None:
        return f"task_run:{task.task_run.id}"
    flow = current_flow_run()
    if flow is not None:
        return f"flow_run:{flow.flow_run.id}"
    return None


def engine_client() -> EngineClient:
    """The engine client of the calling flow run, else this process's."""
    from runtime.engine.backend import get_engine_client
    from runtime.engine.context import current_flow_run

    flow = current_flow_run()
    return flow.client if flow is not None else get_engine_client()


def check_lease_duration(names: list[str], lease_duration: float) -> None:
    """Prefect refuses leases shorter than a minute or longer than a day (422)."""
    if not LEASE_MIN_SECONDS <= lease_duration <= LEASE_MAX_SECONDS:
        raise ConcurrencySlotAcquisitionError(
            f"Unable to acquire concurrency slots on {names!r}: lease_duration must be "
            f"between {LEASE_MIN_SECONDS:g} and {LEASE_MAX_SECONDS:g} seconds, "
            f"not {lease_duration:g}"
        )


def acquire(
    names: list[str],
    occupy: int,
    *,
    mode: Literal["concurrency", "rate_limit"],
    timeout_seconds: float | None,
    max_retries: int | None,
    lease_duration: float,
    strict: bool,
    holder: Any,
    client: EngineClient | None = None,
    cancelled: threading.Event | None = None,
) -> tuple[EngineClient, Lease]:
    """Block until the slots are held; the lease (empty when no named limit is enforced).

    Errors as Prefect raises them: :class:`AcquireConcurrencySlotTimeoutError` after
    ``timeout_seconds``, :class:`ConcurrencySlotAcquisitionError` for everything
    waiting cannot fix (``occupy`` above a limit, a rate limit without decay, no
    such limit with ``strict``, ``max_retries`` spent).
    """
    if occupy < 1:
        raise ConcurrencySlotAcquisitionError(
            f"Unable to acquire concurrency slots on {names!r}: occupy must be >= 1"
        )
    client = client or engine_client()
    request = SlotRequest(slots=occupy, lease_seconds=lease_duration, missing_ok=True, mode=mode)
    try:
        lease = client.acquire_slots(
            names,
            holder=holder_of(holder),
            request=request,
            timeout=timeout_seconds,
            max_retries=max_retries,
            cancelled=cancelled,
        )
    except SlotWaitTimeout as exc:
        raise AcquireConcurrencySlotTimeoutError(str(exc)) from exc
    except SlotRetriesExhausted as exc:
        raise ConcurrencySlotAcquisitionError(
            f"Unable to acquire concurrency slots on {names!r}: {exc}"
        ) from exc
    except LimitExceeded as exc:
        raise ConcurrencySlotAcquisitionError(
            f"Unable to acquire concurrency slots on {names!r}: Slots requested is greater "
            f"than the limit ({exc.message})"
        ) from exc
    except StratoflowError as exc:
        raise ConcurrencySlotAcquisitionError(
            f"Unable to acquire concurrency slots on {names!r}: {exc.message}"
        ) from exc
    if not lease.limit_names and not lease.inactive_names:  # none of them exists
        if strict:
            raise ConcurrencySlotAcquisitionError(
                f"Concurrency limits {names!r} must be created before acquiring slots"
            )
        run_logger().warning("Concurrency limits %r do not exist - skipping acquisition.", names)
    return client, lease


def release(client: EngineClient, lease: Lease) -> None:
    """Give the slots back (a rate limit's drain on their own)."""
    if lease.limit_names:
        client.release_slots(lease)


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger inside a flow or task run (its logs reach the API), else ours."""
    try:
        from runtime.engine.runlogs import get_run_logger

        return get_run_logger()
    except Exception:
        return logger
