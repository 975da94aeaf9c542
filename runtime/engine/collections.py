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


def visit_collection(
    expr: Any,
    visit_fn: Visitor,
    *,
    return_data: bool = False,
    remove_annotations: bool = False,
    context: dict[str, Any] | None = None,
    _seen: dict[int, Any] | None = None,
) -> Any:
    """Call ``visit_fn(value, context)`` on ``expr`` and everything inside it.

    With ``return_data``, returns ``expr`` with each value replaced by what
    ``visit_fn`` returned (containers are copied only when something inside
    changed); otherwise returns None. ``remove_annotations`` replaces an
    annotation by its (visited) contents. ``context["annotation"]`` holds the
    innermost annotation around the value being visited.
    """
    if type(expr) in _ATOMIC:  # the common case: nothing inside, nothing to do
        result = visit_fn(expr, context if context is not None else {})
        return result if return_data else None
    if context is None:
        context = {}
    if _seen is None:
        _seen = {}
    try:
        result = visit_fn(expr, context)
    except StopVisiting:
        return expr if return_data else None
    if return_data:
        expr = result
    key = id(expr)
    if key in _seen:
        return _seen[key] if return_data else None
    _seen[key] = expr

    def nested(value: Any, ctx: dict[str, Any] | None = None) -> Any:
        return visit_collection(
            value,
            visit_fn,
            return_data=return_data,
            remove_annotations=remove_annotations,
            context=dict(ctx if ctx is not None else context),
            _seen=_seen,
        )

    result = expr
    if isinstance(expr, types.GeneratorType | types.AsyncGeneratorType):
        pass  # iterating would consume it
    elif isinstance(expr, BaseAnnotation):
        inner = expr.unwrap()
        inner_context = {**context, "annotation": expr}
        if expr.traverse:
            value = nested(inner, inner_context)
        else:
            try:
                value = visit_fn(inner, inner_context)
            except StopVisiting:
                value = inner
        if return_data:
            if remove_annotations:
                result = value
            elif value is not inner:
                result = expr.rewrap(value)
    elif isinstance(expr, list | tuple | set | frozenset):
        items = [nested(item) for item in expr]
        if return_data and any(new is not old for new, old in zip(items, expr, strict=True)):
            kind = type(expr)
            make = getattr(kind, "_make", None)  # a named tuple
            result = make(items) if make is not None else kind(items)
    elif isinstance(expr, dict):
        pairs = [(nested(k), nested(v)) for k, v in expr.items()]
        if return_data and any(
            nk is not k or nv is not v for (nk, nv), (k, v) in zip(pairs, expr.items(), strict=True)
        ):
            result = type(expr)(pairs)
    elif dataclasses.is_dataclass(expr) and not isinstance(expr, type):
        fields = dataclasses.fields(expr)
        values = [nested(getattr(expr, f.name)) for f in fields]
        if return_data and any(
            getattr(expr, f.name) is not v for f, v in zip(fields, values, strict=True)
        ):
            # rebuilt through its constructor: __post_init__ runs with the resolved values
            result = dataclasses.replace(
                expr, **{f.name: v for f, v in zip(fields, values, strict=True) if f.init}
            )
    elif isinstance(expr, pydantic.BaseModel):
        original = dict(expr)
        updated = {name: nested(value) for name, value in original.items()}
        if return_data and any(updated[k] is not original[k] for k in updated):
            model = expr.model_construct(_fields_set=expr.model_fields_set, **updated)
            for private in expr.__private_attributes__:
                setattr(model, private, getattr(expr, private))
            result = model
    if return_data:
        _seen[key] = result
        return result
    return None
