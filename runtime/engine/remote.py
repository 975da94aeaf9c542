"""Flow methods that reach outside the engine (``Flow.serve``, ``Flow.to_deployment``).

They need the worker and the deployment services, which sit beside the engine
and import it; the engine must not import them back (``.importlinter``: runtime's
subpackages form no cycle). So the implementation registers itself here when
``sdk`` is imported (``sdk/serve.py``), and the Flow method looks it up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_methods: dict[str, Callable[..., Any]] = {}


def register(name: str, fn: Callable[..., Any]) -> None:
    """Make ``fn`` the implementation of the flow method ``name``."""
    _methods[name] = fn


def method(name: str) -> Callable[..., Any]:
    """The implementation of the flow method ``name`` (importing ``sdk`` registers them)."""
    try:
        return _methods[name]
    except KeyError:
        raise RuntimeError(
            f"Flow.{name} is not available: import sdk (``from sdk import flow``) first"
        ) from None
