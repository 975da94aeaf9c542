"""A new object's references to others must exist: InvalidInput naming the field otherwise."""

from __future__ import annotations

from collections.abc import Callable

from runtime.errors import InvalidInput, NotFound

__all__ = ["must_exist"]


def must_exist(field: str, value: str | None, read: Callable[[str], object]) -> None:
    """``read(value)`` must find it: a reference to nothing is InvalidInput naming ``field``."""
    if value is None:
        return
    try:
        read(value)
    except NotFound:
        raise InvalidInput(
            f"body.{field}: {value} does not exist", field=field, value=value
        ) from None
