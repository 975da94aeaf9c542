"""Methods as flows and tasks (issue 9, item 3).

Oracle: Prefect 3's ``Flow.__get__`` / ``Task.__get__`` (src/prefect/flows.py,
src/prefect/tasks.py) and tests/test_flows.py (``test_flow_supports_instance_methods``,
``..._class_methods``, ``..._static_methods``, their async forms and the
pydantic ``BaseModel`` variants with ``ignored_types=(Flow,)``). The bound
``self``/``cls`` is passed to the function and is not a parameter: not in the
recorded parameters, the parameter schema, run names or cache keys.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pydantic
import pytest

from runtime.engine.client import DirectEngineClient
from runtime.models import FlowRunFilter, TaskRunFilter
from sdk import Flow, Task, flow, task
from sdk.cache_policies import INPUTS


class Base:
    def __init__(self, x: int) -> None:
        self.x = x


class BaseModelFoo(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(ignored_types=(Flow, Task))
    x: int


@pytest.mark.parametrize("base", [Base, BaseModelFoo])
def test_flow_on_an_instance_method(engine: DirectEngineClient, base: type[Any]) -> None:
    class Foo(base):  # type: ignore[valid-type,misc]
        @flow
        def instance_method(self, y: int = 0) -> int:
            return int(self.x + y)

    f = Foo(x=1)
    assert Foo(x=5).instance_method() == 5
    assert f.instance_method(y=2) == 3
    assert isinstance(Foo(x=10).instance_method, Flow)
    assert Foo.instance_method(f) == 1  # read from the class: the instance is passed first
    runs = engine.stores.runs.list_flow_runs(FlowRunFilter()).items
    recorded = sorted((r.parameters for r in runs), key=lambda p: sorted(p))
    assert {"y": 0} in recorded and {"y": 2} in recorded  # self is not a parameter
    assert list(Foo(x=1).instance_method.parameters.properties) == ["y"]


@pytest.mark.parametrize("base", [Base, BaseModelFoo])
def test_flow_on_class_and_static_methods_in_either_order(
    engine: DirectEngineClient, base: type[Any]
) -> None:
    class Foo(base):  # type: ignore[valid-type,misc]
        @flow
        @classmethod
        def class_method(cls) -> str:
            return cls.__name__

        @classmethod  # type: ignore[misc]
        @flow
        def class_method_other_order(cls) -> str:
            return str(cls.__name__)

        @flow
        @staticmethod
        def static_method() -> str:
            return "static"

        @staticmethod
        @flow
        def static_method_other_order() -> str:
            return "static"

    class Child(Foo):
        pass

    assert Foo.class_method() == "Foo" and Child.class_method() == "Child"
    assert isinstance(Foo.class_method, Flow)
    assert Foo.class_method_other_order() == "Foo"
    assert Foo.static_method() == "static" and isinstance(Foo.static_method, Flow)
    assert Foo.static_method_other_order() == "static"
    assert Foo(x=1).class_method() == "Foo"
    assert Child.class_method.with_options(name="renamed")() == "Child"


@pytest.mark.parametrize("base", [Base, BaseModelFoo])
def test_async_flow_methods(engine: DirectEngineClient, base: type[Any]) -> None:
    class Foo(base):  # type: ignore[valid-type,misc]
        @flow
        async def instance_method(self) -> int:
            return int(self.x)

        @flow
        @classmethod
        async def class_method(cls) -> str:
            return cls.__name__

    assert asyncio.run(Foo(x=4).instance_method()) == 4
    assert asyncio.run(Foo.class_method()) == "Foo"


def test_task_methods_submit_map_and_names(engine: DirectEngineClient) -> None:
    class Calc:
        def __init__(self, base: int) -> None:
            self.base = base

        @task(task_run_name="add-{n}")
        def add(self, n: int) -> int:
            return self.base + n

        @task
        @classmethod
        def label(cls, n: int) -> str:
            return f"{cls.__name__}:{n}"

        @staticmethod
        @task
        def double(n: int) -> int:
            return n * 2

    calc = Calc(100)

    @flow
    def f() -> list[Any]:
        return [
            calc.add(1),
            calc.add.submit(2).result(),
            calc.add.map([3, 4]).result(),
            Calc.label(5),
            Calc.double.submit(6).result(),
        ]

    assert f() == [101, 102, [103, 104], "Calc:5", 12]
    names = sorted(r.name for r in engine.stores.runs.list_task_runs(TaskRunFilter()).items)
    assert names == ["add-1", "add-2", "add-3", "add-4", "double-0", "label-0"]


def test_self_is_left_out_of_cache_keys(engine: DirectEngineClient) -> None:
    """Two instances share an INPUTS cache entry for the same arguments (``self`` is bound,
    not an input). Prefect hashes ``self`` into INPUTS keys: a documented difference."""
    calls: list[int] = []

    class Model:
        def __init__(self) -> None:
            self.lock = threading.Lock()  # cannot be hashed: would fail a key including self

        @task(cache_policy=INPUTS)
        def compute(self, n: int) -> int:
            calls.append(n)
            return n * 10

    @flow
    def f() -> list[int]:
        return [Model().compute(1), Model().compute(1)]

    assert f() == [10, 10]
    assert calls == [1]


def test_bound_copies_do_not_share_self_across_threads(engine: DirectEngineClient) -> None:
    """Each bound copy keeps its own instance (Prefect sets it on the shared function)."""

    class Holder:
        def __init__(self, x: int) -> None:
            self.x = x

        @task
        def get(self) -> int:
            return self.x

    first, second = Holder(1).get, Holder(2).get

    @flow
    def f() -> list[int]:
        return [first.submit().result(), second.submit().result(), first()]

    assert f() == [1, 2, 1]
