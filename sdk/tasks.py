"""``sdk.tasks``: the task decorator and retry helpers (Prefect's ``prefect.tasks``)."""

from __future__ import annotations

from typing import Any

from runtime.cache_policies import CacheKeyError, hash_objects
from runtime.engine.tasks import Task, exponential_backoff, task

__all__ = ["Task", "exponential_backoff", "task", "task_input_hash"]


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """A ``cache_key_fn`` hashing the task's key, its code and every argument (Prefect's).

    As ``prefect.tasks.task_input_hash``: the hash of the task's key (its qualified name
    and a source fingerprint), its function's bytecode (``__code__.co_code``) and the
    arguments, as JSON or, failing that, cloudpickle; ``None`` (do not cache this call)
    when neither can serialize an argument. ``context`` is what the engine passes to a
    ``cache_key_fn``: its ``task`` (a ``TaskRunContext``) or its ``task_key`` and
    ``task_fn`` (a ``CacheKeyContext``).
    """
    task_obj = getattr(context, "task", None)
    if task_obj is not None:
        task_key, fn = task_obj.task_key, task_obj.fn
    else:
        task_key, fn = context.task_key, context.task_fn
    code = getattr(getattr(fn, "__code__", None), "co_code", b"")
    try:
        return hash_objects(task_key, code.hex(), arguments)
    except CacheKeyError:
        return None
