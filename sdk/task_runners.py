"""``sdk.task_runners`` (Prefect's ``prefect.task_runners``)."""

from runtime.engine.task_runners import ThreadPoolTaskRunner

__all__ = ["ThreadPoolTaskRunner"]
