"""Visiting the values inside task parameters and return values (Prefect's ``visit_collection``).

Futures hide in lists, tuples (named ones too), sets, dicts (keys and values),
dataclasses and pydantic models, nested to any depth. :func:`visit_collection`
calls a function on every value and, with ``return_data``, rebuilds only the
containers whose contents changed: a dataclass through its constructor (so its
``__post_init__`` runs again, as in Prefect), a pydantic model with
``model_construct`` (no validation; private attributes carried over).

Annotations (``unmapped``, ``allow_failure``, ``quote``, ``opaque``) are entered
with the annotation noted in the context; ``quote`` stops the visit of its
contents; ``opaque`` visits the value itself and nothing inside it.
Values of plain scalar types return at once, so parameters without
containers cost one type lookup each.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any

import pydantic

_ATOMIC: frozenset[type] = frozenset({int, float, str, bytes, bool, type(None), complex})


class StopVisiting(Exception):
    """Raised by a visit function: do not look inside this value."""


class BaseAnnotation:
    """A wrapper that marks a value for the engine (``unmapped``, ``allow_failure``, ``quote``)."""

    __slots__ = ("value",)
    traverse = True
    """False (``opaque``): the value itself is visited, never what is inside it."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def unwrap(self) -> Any:
        """The wrapped value."""
        return self.value

    def rewrap(self, value: Any) -> BaseAnnotation:
        """The same annotation around another value."""
        return type(self)(value)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.value == other.value  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), id(self.value)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


Visitor = Callable[[Any, dict[str, Any]], Any]


def is_plain(value: Any) -> bool:
    """True when nothing can hide inside ``value``: a scalar, or a flat list, tuple or dict
    of scalars (what most parameters are). Callers skip the visit for these."""
    kind = type(value)
    if kind in _ATOMIC:
        return True
    if kind is list or kind is tuple:
        return all(type(item) in _ATOMIC for item in value)
    if kind is dict:
        return all(type(k) in _ATOMIC and type(v) in _ATOMIC for k, v in value.items())
    return False


def visit_collection(
    expr: Any,
    visit_fn: Visitor,
    *,
    return_data: bool = False,
    remove_annotations: bool = False,
    context: dict[str, Any] | None = None,
) -> Any:
    """Call ``visit_fn(value, context)`` on ``expr`` and everything inside it.

    With ``return_data``, returns ``expr`` with each value replaced by what
    ``visit_fn`` returned (containers are copied only when something inside
    changed); otherwise returns None. ``remove_annotations`` replaces an
    annotation by its (visited) contents. ``context["annotation"]`` holds the
    innermost annotation around the value being visited; visitors read the
    context and must not change it (it is shared, not copied, for speed).
    """
    if type(expr) in _ATOMIC:  # the common case: nothing inside, nothing to do
        result = visit_fn(expr, context if context is not None else {})
        return result if return_data else None
    seen: dict[int, Any] = {}

    def visit(expr: Any, context: dict[str, Any]) -> Any:
        if type(expr) in _ATOMIC:
            return visit_fn(expr, context)
        try:
            result = visit_fn(expr, context)
        except StopVisiting:
            return expr
        if return_data:
            expr = result
        key = id(expr)
        if key in seen:
            return seen[key]
        seen[key] = expr
        result = expr
        if isinstance(expr, types.GeneratorType | types.AsyncGeneratorType):
            pass  # iterating would consume it
        elif isinstance(expr, BaseAnnotation):
            inner = expr.unwrap()
            inner_context = {**context, "annotation": expr}
            if expr.traverse:
                value = visit(inner, inner_context)
            else:
                try:
                    value = visit_fn(inner, inner_context)
                except StopVisiting:
                    value = inner
            if remove_annotations:
                result = value
            elif value is not inner:
                result = expr.rewrap(value)
        elif isinstance(expr, list | tuple | set | frozenset):
            items = [visit(item, context) for item in expr]
            if any(new is not old for new, old in zip(items, expr, strict=True)):
                kind = type(expr)
                make = getattr(kind, "_make", None)  # a named tuple
                result = make(items) if make is not None else kind(items)
        elif isinstance(expr, dict):
            pairs = [(visit(k, context), visit(v, context)) for k, v in expr.items()]
            if any(
                nk is not k or nv is not v
                for (nk, nv), (k, v) in zip(pairs, expr.items(), strict=True)
            ):
                result = type(expr)(pairs)
        elif dataclasses.is_dataclass(expr) and not isinstance(expr, type):
            fields = dataclasses.fields(expr)
            values = [visit(getattr(expr, f.name), context) for f in fields]
            if any(getattr(expr, f.name) is not v for f, v in zip(fields, values, strict=True)):
                # rebuilt through its constructor: __post_init__ runs with the resolved values
                result = dataclasses.replace(
                    expr, **{f.name: v for f, v in zip(fields, values, strict=True) if f.init}
                )
        elif isinstance(expr, pydantic.BaseModel):
            original = dict(expr)
            updated = {name: visit(value, context) for name, value in original.items()}
            if any(updated[k] is not original[k] for k in updated):
                model = expr.model_construct(_fields_set=expr.model_fields_set, **updated)
                for private in expr.__private_attributes__:
                    setattr(model, private, getattr(expr, private))
                result = model
        seen[key] = result
        return result

    out = visit(expr, context if context is not None else {})
    return out if return_data else None
