"""Task runners: where submitted tasks run (Prefect's ``ThreadPoolTaskRunner``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


class ThreadPoolTaskRunner:
    """Run submitted tasks on a pool of threads (the default task runner).

    ``max_workers`` defaults to ``STRATOFLOW_TASK_RUNNER_MAX_WORKERS`` or 32.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.max_workers = max_workers

    def executor(self) -> ThreadPoolExecutor:
        """A new executor for one flow run."""
        from runtime.settings import get_settings

        workers = self.max_workers or get_settings().task_runner_max_workers
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stratoflow-task")

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers})"
