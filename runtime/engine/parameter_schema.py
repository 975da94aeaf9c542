"""A flow's parameter schema: ``Flow.parameters`` (Prefect's ``ParameterSchema``).

The OpenAPI-style description of the function's parameters that Prefect
builds in ``prefect.utilities.callables.parameter_schema``: one property per
parameter with its ``title``, ``position``, type, default and the description
from a Google-style docstring (``Args:``); ``required`` lists those without a
default; models used in annotations are under ``definitions``. ``self`` and
``cls`` are left out; a type pydantic cannot describe becomes "any"; a
class pydantic does not know gives an empty schema.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, Literal

import pydantic
from pydantic import ConfigDict, TypeAdapter, create_model
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema


class ParameterSchema(pydantic.BaseModel):
    """The schema of a flow's parameters (an OpenAPI ``Schema`` object)."""

    title: Literal["Parameters"] = "Parameters"
    type: Literal["object"] = "object"
    properties: dict[str, Any] = pydantic.Field(default_factory=dict)
    required: list[str] = pydantic.Field(default_factory=list)
    definitions: dict[str, Any] = pydantic.Field(default_factory=dict)

    def model_dump_for_openapi(self) -> dict[str, Any]:
        """The schema as a dict, without an empty ``required`` list."""
        result = self.model_dump(mode="python", exclude_none=True)
        if not result.get("required"):
            result.pop("required", None)
        return result


class _EmptySchemaForUserClasses(GenerateJsonSchema):
    """A class pydantic knows only by ``isinstance`` gets an empty schema (as in Prefect)."""

    def is_instance_schema(self, schema: core_schema.IsInstanceSchema) -> JsonSchemaValue:
        return {}


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params)\s*:\s*$")
_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parameter_docstrings(docstring: str | None) -> dict[str, str]:
    """Parameter descriptions from a Google-style docstring's ``Args:`` section."""
    found: dict[str, str] = {}
    if not docstring:
        return found
    lines = inspect.cleandoc(docstring).splitlines()
    in_section = False
    indent: int | None = None
    current: str | None = None
    for line in lines:
        if _SECTION.match(line.strip()) and not line.startswith((" ", "\t")):
            in_section, indent, current = True, None, None
            continue
        if not in_section:
            continue
        if not line.strip():
            current = None
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            in_section = False
            continue
        if indent is None:
            indent = depth
        match = _ENTRY.match(line.strip())
        if depth == indent and match:
            current = match.group(1).lstrip("*")
            found[current] = match.group(3).strip()
        elif current is not None:
            found[current] = f"{found[current]} {line.strip()}".strip()
    return {name: text for name, text in found.items() if text}


def _schema(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    model = create_model(  # type: ignore[call-overload]
        name, __config__=ConfigDict(arbitrary_types_allowed=True), **fields
    )
    schema: dict[str, Any] = TypeAdapter(model).json_schema(
        by_alias=True,
        ref_template="#/definitions/{model}",
        schema_generator=_EmptySchemaForUserClasses,
    )
    if "$defs" in schema:
        schema["definitions"] = schema.pop("$defs")
    return schema


def parameter_schema(fn: Callable[..., Any]) -> ParameterSchema:
    """The :class:`ParameterSchema` of ``fn``'s signature."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError):
        signature = inspect.signature(fn)
    docstrings = parameter_docstrings(inspect.getdoc(fn))
    fields: dict[str, Any] = {}
    for position, param in enumerate(signature.parameters.values()):
        if param.name in ("self", "cls"):
            continue  # passed implicitly: not a parameter
        name = param.name
        alias = None
        if hasattr(pydantic.BaseModel, name):  # a field may not shadow a BaseModel attribute
            name, alias = f"{name}__", name
        annotation = Any if param.annotation is param.empty else param.annotation
        existing = param.default if isinstance(param.default, pydantic.fields.FieldInfo) else None
        default = existing.default if existing is not None else param.default
        extra: dict[str, Any] = {}
        if existing is not None and isinstance(existing.json_schema_extra, dict):
            extra.update(existing.json_schema_extra)
        extra.setdefault("position", position)
        field = pydantic.Field(
            default=... if default is param.empty else default,
            title=param.name,
            description=(existing.description if existing else None) or docstrings.get(param.name),
            alias=alias,
            json_schema_extra=extra,
        )
        try:
            _schema("CheckParameter", {name: (annotation, field)})
        except (ValueError, TypeError, pydantic.errors.PydanticUserError):
            annotation = Any
        fields[name] = (annotation, field)
    return ParameterSchema(**_schema("Parameters", fields))
