"""Checks of ``@flow`` / ``@task`` keyword arguments, made when decorating.

A wrong type found here is a ``TypeError`` naming the keyword at import time,
instead of an exception inside the engine in the middle of a run. Where
Prefect 3 checks the same argument, the message is Prefect's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any


def _kind(value: Any) -> str:
    return type(value).__name__


def check_bool(name: str, value: Any) -> None:
    """``value`` is None or a bool."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"Expected a bool (or None) for {name!r}; got {_kind(value)} {value!r}")


def check_count(name: str, value: Any) -> int:
    """``value`` is None or an int >= 0 (not a bool); returns it as an int (None: 0)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected an int for {name!r}; got {_kind(value)} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_number(
    name: str, value: Any, *, positive: bool = False, what: str = "a number of seconds"
) -> float | None:
    """``value`` is None or a number (> 0 with ``positive``, else >= 0)."""
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(f"Expected {what} for {name!r}; got {_kind(value)} {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0")
    if not positive and value < 0:
        raise ValueError(f"{name} must be >= 0")
    return float(value)


def check_delays(value: Any) -> None:
    """A task's ``retry_delay_seconds``: a number, a list of numbers, a callable or None."""
    if value is None or callable(value) or _is_number(value):
        return
    if isinstance(value, list | tuple):
        bad = [d for d in value if not _is_number(d)]
        if bad:
            raise TypeError(
                f"Expected numbers in 'retry_delay_seconds'; got {_kind(bad[0])} {bad[0]!r}"
            )
        return
    raise TypeError(  # Prefect's message
        "Invalid `retry_delay_seconds` provided; must be an int, float, list or callable. "
        f"Received type {type(value)}"
    )


def check_timedelta(name: str, value: Any) -> None:
    """``value`` is None or a ``datetime.timedelta`` (seconds as an int are refused)."""
    if value is not None and not isinstance(value, timedelta):
        hint = f" (use timedelta(seconds={value!r}))" if _is_number(value) else ""
        raise TypeError(
            f"Expected a datetime.timedelta for {name!r}; got {_kind(value)} {value!r}{hint}"
        )


def check_name_template(name: str, value: Any) -> None:
    """A run-name template: None, a string or a callable (Prefect's message)."""
    if value is not None and not isinstance(value, str) and not callable(value):
        raise TypeError(f"Expected string or callable for {name!r}; got {_kind(value)} instead.")


def check_callable(name: str, value: Any) -> None:
    """``value`` is None or callable (Prefect's message)."""
    if value is not None and not callable(value):
        raise TypeError(f"Expected `{name}` to be callable, got {_kind(value)} instead.")


def check_hooks(name: str, hooks: Any) -> list[Callable[..., Any]]:
    """A list of state hooks (Prefect's messages); returns it as a list."""
    if hooks is None:
        return []
    if not isinstance(hooks, list | tuple):
        raise TypeError(
            f"Expected a list of callables in {name!r}; got {_kind(hooks)} instead "
            f"(write {name}=[hook])."
        )
    for hook in hooks:
        if not callable(hook):
            raise TypeError(
                f"Expected callables in {name!r}; got {_kind(hook)} instead. "
                f"Please provide a list of hooks to {name!r}."
            )
    return list(hooks)


def check_hook(name: str, hook: Any) -> Callable[..., Any]:
    """One hook given to the decorator form (``@my_task.on_completion``): a callable."""
    if not callable(hook):
        raise TypeError(f"Expected a callable for {name!r}; got {_kind(hook)} instead.")
    result: Callable[..., Any] = hook
    return result


def check_cache_policy(value: Any, not_set: Any) -> None:
    """``value`` is unset, None or a ``CachePolicy`` (``INPUTS``, ``TASK_SOURCE``, ...)."""
    from runtime.cache_policies import CachePolicy

    if value is not_set or value is None or isinstance(value, CachePolicy):
        return
    raise TypeError(
        "Expected a CachePolicy for 'cache_policy' (for example "
        f"sdk.cache_policies.INPUTS); got {_kind(value)} {value!r}"
    )


def check_result_storage(value: Any) -> None:
    """``value`` is None or a local result storage (``sdk.filesystems.LocalFileSystem``)."""
    from runtime.local_results import LocalResultStorage

    if value is None or isinstance(value, LocalResultStorage):
        return
    if isinstance(value, str):
        raise TypeError(
            f"result_storage={value!r}: block references need blocks, which arrive in a "
            "later phase; pass sdk.filesystems.LocalFileSystem(basepath=...), or leave it "
            "unset to keep results in the installation (inline or S3)"
        )
    raise TypeError(
        "Expected sdk.filesystems.LocalFileSystem for 'result_storage'; got "
        f"{_kind(value)} {value!r} (other storage blocks arrive with blocks, in a later phase)"
    )
