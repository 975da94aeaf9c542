"""``sdk.task_worker``: serve background tasks (Prefect's ``prefect.task_worker``).

``serve(*tasks, limit=10)`` long-polls the installation's task-run SQS queue and
runs the runs that ``task.delay()`` / ``task.apply_async()`` created, until SIGTERM
or SIGINT (it then stops polling, hands back what it has not started, lets the
runs in progress finish, and returns). Differences from Prefect: no status server
(``status_server_port``), and ``poll_seconds`` (the SQS long poll, default 20).
"""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.engine.background.worker import StopTaskWorker, TaskWorker
from runtime.engine.background.worker import serve as _serve

__all__ = ["StopTaskWorker", "TaskWorker", "aserve", "serve"]


def serve(
    *tasks: Any,
    limit: int | None = 10,
    timeout: float | None = None,
    poll_seconds: int = 20,
) -> None:
    """Serve ``tasks`` until SIGTERM/SIGINT or ``timeout`` seconds (see the module docstring)."""
    _serve(*tasks, limit=limit, timeout=timeout, poll_seconds=poll_seconds)


async def aserve(
    *tasks: Any,
    limit: int | None = 10,
    timeout: float | None = None,
    poll_seconds: int = 20,
) -> None:
    """:func:`serve`, awaitable (the worker runs on a thread; signals need the main thread)."""
    await asyncio.to_thread(_serve, *tasks, limit=limit, timeout=timeout, poll_seconds=poll_seconds)
