"""``sdk.tasks``: the task decorator and retry helpers (Prefect's ``prefect.tasks``)."""

from runtime.engine.tasks import Task, exponential_backoff, task

__all__ = ["Task", "exponential_backoff", "task"]
