"""What a JSON value may hold to be stored: finite numbers and a bounded nesting depth.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``1e999999`` (as ``inf``), and
pydantic writes them back as ``null``: a parameter would silently change. A
value nested deeper than :data:`MAX_JSON_DEPTH` could be written but not read
back (pydantic's JSON reader stops at about 200 levels), and Python's reader
raises ``RecursionError`` at about 1,000. Both are refused with the path of the
offending value, for API bodies (:func:`loads_checked`) and for the models'
free-form dicts such as flow-run parameters (:func:`check_json_value`).
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and arrays accepted (an API body itself is level 1)."""

Path = tuple[str | int, ...]


class JsonValueError(ValueError):
    """A value that cannot be stored as JSON; ``path`` locates it, ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in path)}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


def _describe(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def check_json_value(value: Any, path: Path = (), *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JsonValueError` for a non-finite float or nesting deeper than ``max_depth``.

    ``value`` itself is at level 1 when it is a dict or list; ``path`` prefixes
    the reported location. Iterative, so no depth can overflow the stack.
    """
    stack: list[tuple[Any, Path, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise JsonValueError(
                    where,
                    f"{_describe(item)} is not a JSON number (NaN and infinite numbers are "
                    "refused: send a finite number, a string or null)",
                )
        elif isinstance(item, dict | list):
            if depth + 1 > max_depth:
                raise JsonValueError(where[: len(path) + 3], _too_deep(max_depth))
            entries = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((v, (*where, k), depth + 1) for k, v in entries)


def _too_deep(max_depth: int) -> str:
    return f"nested deeper than {max_depth} levels of objects and arrays"


def loads_checked(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses what :func:`check_json_value` refuses.

    Malformed JSON raises :class:`JsonValueError` too (with the position).
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonValueError((), _too_deep(max_depth)) from None
    except json.JSONDecodeError as exc:
        raise JsonValueError(
            (), f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise JsonValueError((), f"invalid JSON: {exc}") from None
    check_json_value(value, max_depth=max_depth)
    return value
