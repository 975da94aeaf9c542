"""Typed run inputs (Prefect's ``prefect.input.run_input``): what a paused flow waits for.

``pause_flow_run(wait_for_input=Model)`` stores ``Model``'s JSON schema under the
pause's ``-schema`` key; ``resume_flow_run(id, run_input={...})`` is validated
against it and stored under ``-response``; the flow then gets a ``Model`` back.
A plain pydantic model is wrapped in a :class:`RunInput` subclass; any other type
(``int``, ``list[str]``) in an :class:`AutomaticRunInput` with one field ``value``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Self, TypeVar, cast
from uuid import UUID

import pydantic
from pydantic import ConfigDict

from runtime.services.pauses import keyset_from_base_key, keyset_from_paused_state
from sdk.input.actions import create_flow_run_input, ensure_flow_run_id, read_flow_run_input

__all__ = [
    "AutomaticRunInput",
    "Keyset",
    "RunInput",
    "RunInputMetadata",
    "keyset_from_base_key",
    "keyset_from_paused_state",
    "run_input_subclass_from_type",
]

Keyset = dict[str, str]
"""The ``description``, ``response`` and ``schema`` keys of one input."""

T = TypeVar("T")


class RunInputMetadata(pydantic.BaseModel):
    """Where a loaded input came from."""

    key: str
    sender: str | None = None
    receiver: str


class RunInput(pydantic.BaseModel):
    """A pydantic model a flow run can wait for (subclass it, as in Prefect)."""

    model_config = ConfigDict(extra="forbid")

    _description: ClassVar[str | None] = None
    _metadata: RunInputMetadata | None = pydantic.PrivateAttr(default=None)

    @property
    def metadata(self) -> RunInputMetadata | None:
        """The key and flow run it was loaded from."""
        return self._metadata

    @classmethod
    def keyset_from_type(cls) -> Keyset:
        """Keys named after the class (``<classname>-response`` ...)."""
        return keyset_from_base_key(cls.__name__.lower())

    @classmethod
    def input_schema(cls) -> dict[str, Any]:
        """The JSON schema ``resume_flow_run`` validates the input against."""
        return cls.model_json_schema(by_alias=True)

    @classmethod
    def save(cls, keyset: Keyset, flow_run_id: str | UUID | None = None) -> None:
        """Store the schema (and the description, if any) under ``keyset``."""
        create_flow_run_input(keyset["schema"], cls.input_schema(), flow_run_id=flow_run_id)
        if cls._description:
            create_flow_run_input(keyset["description"], cls._description, flow_run_id=flow_run_id)

    @classmethod
    def load(cls, keyset: Keyset, flow_run_id: str | UUID | None = None) -> Any:
        """The response stored under ``keyset`` as an instance (validated again here)."""
        run_id = ensure_flow_run_id(flow_run_id)
        value = read_flow_run_input(keyset["response"], flow_run_id=run_id)
        instance = cls(**value) if value else cls()
        instance._metadata = RunInputMetadata(key=keyset["response"], receiver=run_id)
        return instance

    @classmethod
    def with_initial_data(cls, description: str | None = None, **kwargs: Any) -> type[Self]:
        """A subclass whose fields default to ``kwargs`` (and a description to show)."""
        fields: dict[str, Any] = {}
        for key, value in kwargs.items():
            original = cls.model_fields.get(key)
            fields[key] = (original.annotation if original else type(value), value)
        model = pydantic.create_model(cls.__name__, __base__=cls, **fields)
        if description is not None:
            model._description = description
        return model

    @classmethod
    def subclass_from_base_model_type(cls, model_cls: type[pydantic.BaseModel]) -> type[RunInput]:
        """A RunInput subclass of a plain pydantic model (its instances are ``model_cls``'s)."""
        return cast("type[RunInput]", type(f"{model_cls.__name__}RunInput", (cls, model_cls), {}))


class AutomaticRunInput(RunInput, Generic[T]):
    """One field, ``value``: the input of a type that is not a model (``int``, ``list``)."""

    value: T

    @classmethod
    def load(cls, keyset: Keyset, flow_run_id: str | UUID | None = None) -> Any:
        """The stored ``value`` itself."""
        return super().load(keyset, flow_run_id=flow_run_id).value

    @classmethod
    def subclass_from_type(cls, type_: Any) -> type[AutomaticRunInput[Any]]:
        """The AutomaticRunInput of ``type_``."""
        prefix = str(getattr(type_, "__name__", getattr(type_, "_name", "")) or "").lower()
        model = pydantic.create_model(
            f"{prefix}AutomaticRunInput", __base__=AutomaticRunInput, value=(type_, ...)
        )
        return cast("type[AutomaticRunInput[Any]]", model)


def run_input_subclass_from_type(type_: Any) -> type[RunInput]:
    """The RunInput class to wait for ``type_`` with (Prefect's rules)."""
    if isinstance(type_, type):
        if issubclass(type_, RunInput):
            return type_
        if issubclass(type_, pydantic.BaseModel):
            return RunInput.subclass_from_base_model_type(type_)
    return AutomaticRunInput.subclass_from_type(type_)
