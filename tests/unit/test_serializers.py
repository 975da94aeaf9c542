"""Result serializers (``runtime.serializers``): json and pickle round trips and errors."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from runtime.serializers import (
    JSONSerializer,
    PickleSerializer,
    SerializationError,
    Serializer,
    get_serializer,
)


class Point(BaseModel):
    x: int
    y: int


@dataclass
class Box:
    size: int


def test_get_serializer_by_name() -> None:
    assert isinstance(get_serializer("json"), JSONSerializer)
    assert isinstance(get_serializer("pickle"), PickleSerializer)
    assert get_serializer("json").name == "json"
    assert get_serializer("pickle").name == "pickle"
    assert isinstance(get_serializer("json"), Serializer)


@pytest.mark.parametrize("bad", ["yaml", "JSON ", "", "compressed/pickle"])
def test_unknown_serializer_names_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)) as info:
        get_serializer(bad)
    assert "'json'" in str(info.value) and "'pickle'" in str(info.value)


class TestJSON:
    ser = JSONSerializer()

    @pytest.mark.parametrize(
        "value", [None, 1, 1.5, "text", [1, 2], {"a": {"b": [True, None]}}, "üñí"]
    )
    def test_round_trip_plain_values(self, value: Any) -> None:
        assert self.ser.loads(self.ser.dumps(value)) == value

    def test_rich_types_serialize_but_come_back_plain(self) -> None:
        u = uuid.UUID(int=5)
        when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        value = {"p": Point(x=1, y=2), "when": when, "id": u, "s": {3}, "t": (1, 2), "b": Box(4)}
        data = self.ser.dumps(value)
        assert isinstance(data, bytes)
        assert json.loads(data) == self.ser.loads(data)
        assert self.ser.loads(data) == {
            "p": {"x": 1, "y": 2},
            "when": "2024-05-06T07:08:09Z",
            "id": str(u),
            "s": [3],
            "t": [1, 2],
            "b": {"size": 4},
        }

    def test_unsupported_value_says_to_use_pickle(self) -> None:
        with pytest.raises(SerializationError, match='result_serializer="pickle"') as info:
            self.ser.dumps({"lock": threading.Lock()})
        assert isinstance(info.value, ValueError)
        with pytest.raises(SerializationError, match="object"):
            self.ser.dumps(object())

    def test_corrupt_payload(self) -> None:
        with pytest.raises(SerializationError, match="not valid JSON"):
            self.ser.loads(b"{nope")


class TestPickle:
    ser = PickleSerializer()

    def test_round_trip_restores_types(self) -> None:
        value = {"p": Point(x=1, y=2), "s": {1, 2}, "t": (1, 2), "b": Box(3), "raw": b"\x00\xff"}
        assert self.ser.loads(self.ser.dumps(value)) == value

    def test_lambdas_and_local_classes(self) -> None:
        class Local:
            def __init__(self, v: int) -> None:
                self.v = v

        fn = self.ser.loads(self.ser.dumps(lambda n: n * 2))
        assert fn(4) == 8
        assert self.ser.loads(self.ser.dumps(Local(7))).v == 7

    def test_unpicklable_value(self) -> None:
        with pytest.raises(SerializationError, match="lock"):
            self.ser.dumps(threading.Lock())

    def test_corrupt_payload(self) -> None:
        with pytest.raises(SerializationError, match="unpickled"):
            self.ser.loads(b"not a pickle")
