"""Task runners: where submitted tasks run (Prefect's ``prefect.task_runners``).

:class:`ThreadPoolTaskRunner` (the default) runs them on threads of the flow's
process; :class:`ProcessPoolTaskRunner` in worker processes
(``runtime.engine.process_pool``). Either way a task run is orchestrated and
recorded by the same task engine.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


class TaskRunner:
    """What a flow's ``task_runner`` is: a factory of one executor per flow-run attempt."""

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or max_workers < 1):
            raise ValueError("max_workers must be >= 1")
        self.max_workers = max_workers

    def executor(self) -> ThreadPoolExecutor:
        """A new executor for one flow run."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_workers={self.max_workers})"


class ThreadPoolTaskRunner(TaskRunner):
    """Run submitted tasks on a pool of threads (the default task runner).

    ``max_workers`` defaults to ``STRATOFLOW_TASK_RUNNER_MAX_WORKERS`` or 32.
    """

    def executor(self) -> ThreadPoolExecutor:
        """A new executor for one flow run."""
        from runtime.settings import get_settings

        workers = self.max_workers or get_settings().task_runner_max_workers
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stratoflow-task")


class ProcessPoolTaskRunner(TaskRunner):
    """Run submitted tasks in worker processes (``spawn``ed), as Prefect's runner does.

    ``max_workers`` (default: the number of CPUs) processes run task runs at once;
    each is started on first need and serves task runs until the flow run ends.
    Tasks, their parameters and their results travel pickled with cloudpickle; the
    worker talks to the flow's backend itself and its task-run records are written
    by the flow's process. See ``runtime.engine.process_pool`` for what differs from
    threads.
    """

    def executor(self) -> ThreadPoolExecutor:
        """A new executor for one flow run (its processes start on first submit)."""
        from runtime.engine.process_pool import ProcessTaskExecutor

        return ProcessTaskExecutor(self.max_workers or os.cpu_count() or 1)
