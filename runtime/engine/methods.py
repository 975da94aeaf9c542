"""Flows and tasks on methods: ``@flow``/``@task`` on instance methods, classmethods, staticmethods.

As in Prefect (``Flow.__get__`` / ``Task.__get__``), the decorated object is a
descriptor: read from an instance, it gives a copy bound to that instance;
wrapping a ``classmethod`` (either decorator order Prefect accepts), a copy
bound to the class; wrapping a ``staticmethod``, itself. The bound object
(``self``/``cls``) is passed to the function first and is not a parameter
(not recorded, validated, hashed into cache keys nor used in run names).

Unlike Prefect, which sets ``__prefect_self__`` on the one function object all
copies share, the binding is kept on the copy: two threads calling the same
method on two instances never see each other's ``self``.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

METHOD_KINDS = ("classmethod", "staticmethod")


def unwrap_method(fn: Any) -> tuple[Callable[..., Any], str | None]:
    """The plain function inside a ``classmethod``/``staticmethod``, and which it was."""
    if isinstance(fn, classmethod):
        return fn.__func__, "classmethod"
    if isinstance(fn, staticmethod):
        return fn.__func__, "staticmethod"
    return fn, None


def bound_copy(decorated: T, instance: Any, owner: Any) -> T:
    """What ``decorated.__get__(instance, owner)`` gives (see the module docstring).

    ``decorated`` has ``fn`` (the plain function), ``method_kind`` and ``call_target``.
    """
    kind = getattr(decorated, "method_kind", None)
    if kind == "staticmethod":
        return decorated
    if kind == "classmethod":
        target: Any = owner if owner is not None else type(instance)
    elif instance is not None:
        target = instance
    else:
        return decorated  # read from the class: call it with the instance first
    bound = copy.copy(decorated)
    bound.call_target = types.MethodType(decorated.fn, target)  # type: ignore[attr-defined]
    bound.bound_to = target  # type: ignore[attr-defined]
    return bound
