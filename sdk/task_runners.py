"""``sdk.task_runners`` (Prefect's ``prefect.task_runners``)."""

from runtime.engine.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

__all__ = ["ProcessPoolTaskRunner", "TaskRunner", "ThreadPoolTaskRunner"]
