"""Result serializers: ``json`` and ``pickle`` (cloudpickle), chosen per task.

A task's ``result_serializer`` names one of them. ``json`` is readable by any
tool that opens the result (an S3 console, ``jq``) but loses Python types;
``pickle`` restores any value cloudpickle can handle, but only in Python, and
only with compatible library versions on both sides.

>>> get_serializer("json").loads(get_serializer("json").dumps({"a": 1}))
{'a': 1}
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import cloudpickle
from pydantic_core import PydanticSerializationError, to_json

from runtime.errors import StratoflowError

__all__ = [
    "SERIALIZERS",
    "JSONSerializer",
    "PickleSerializer",
    "SerializationError",
    "Serializer",
    "get_serializer",
]


class SerializationError(StratoflowError, ValueError):
    """A value could not be serialized (or a payload deserialized) by the chosen serializer."""

    status_code = 422
    error_type = "serialization_error"


class Serializer(ABC):
    """Turns a value into bytes and back. ``name`` is what a ResultRef records."""

    name: ClassVar[str]

    @abstractmethod
    def dumps(self, value: Any) -> bytes:
        """The value as bytes; raises :class:`SerializationError` when it cannot."""

    @abstractmethod
    def loads(self, data: bytes) -> Any:
        """The value stored in ``data``; raises :class:`SerializationError` when corrupt."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class JSONSerializer(Serializer):
    """JSON via ``pydantic_core.to_json``.

    Serializes what pydantic can: builtins, pydantic models, dataclasses,
    datetimes, dates, UUIDs, Decimals, enums, paths, bytes (as UTF-8 text),
    sets and tuples. Loading is plain :func:`json.loads`: **types are not
    restored** (a model comes back as a dict, a datetime as an ISO string, a
    set or tuple as a list). Use ``result_serializer="pickle"`` to get the
    original Python objects back.
    """

    name: ClassVar[str] = "json"

    def dumps(self, value: Any) -> bytes:
        """The value as UTF-8 JSON; raises :class:`SerializationError` for unsupported types."""
        try:
            return to_json(value)
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            raise SerializationError(
                f"the json result serializer cannot serialize a value of type "
                f'{type(value).__qualname__}: {exc}; use result_serializer="pickle" '
                f"for arbitrary Python objects",
                value_type=type(value).__qualname__,
                serializer=self.name,
            ) from exc

    def loads(self, data: bytes) -> Any:
        """The JSON document in ``data`` as plain Python (dicts, lists, str, numbers, None)."""
        try:
            return json.loads(data)
        except (ValueError, TypeError) as exc:
            raise SerializationError(
                f"the stored result is not valid JSON: {exc}", serializer=self.name
            ) from exc


class PickleSerializer(Serializer):
    """cloudpickle: any Python value, including lambdas and locally defined classes.

    Loading runs arbitrary code from the payload: only load results this
    installation wrote.
    """

    name: ClassVar[str] = "pickle"

    def dumps(self, value: Any) -> bytes:
        """The value pickled with cloudpickle; raises :class:`SerializationError` if it cannot."""
        try:
            data: bytes = cloudpickle.dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"the pickle result serializer cannot serialize a value of type "
                f"{type(value).__qualname__}: {exc}",
                value_type=type(value).__qualname__,
                serializer=self.name,
            ) from exc
        return data

    def loads(self, data: bytes) -> Any:
        """The value pickled in ``data``."""
        try:
            return cloudpickle.loads(data)
        except Exception as exc:
            raise SerializationError(
                f"the stored result cannot be unpickled: {exc!r}", serializer=self.name
            ) from exc


SERIALIZERS: dict[str, Serializer] = {
    JSONSerializer.name: JSONSerializer(),
    PickleSerializer.name: PickleSerializer(),
}
"""Every serializer by name (instances are stateless and shared)."""


def get_serializer(name: str) -> Serializer:
    """The serializer called ``name`` (``"json"`` or ``"pickle"``), else ValueError."""
    try:
        return SERIALIZERS[name]
    except (KeyError, TypeError):
        choices = ", ".join(repr(n) for n in SERIALIZERS)
        raise ValueError(f"unknown result serializer {name!r}: choose one of {choices}") from None
