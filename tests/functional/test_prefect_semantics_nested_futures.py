"""Futures nested in objects are resolved before a task runs (issue 9, item 2).

Oracle: Prefect 3's ``TaskRunEngine._resolve_parameters`` (src/prefect/task_engine.py)
visits every parameter with ``visit_collection`` (src/prefect/utilities/collections.py:
lists, tuples, sets, dicts, dataclasses rebuilt with ``dataclasses.replace`` so
``__post_init__`` runs again, pydantic models rebuilt with ``model_construct``)
and ``resolve_to_final_result`` (src/prefect/utilities/engine/__init__.py); the
runs behind the futures are the task run's inputs (``collect_task_run_inputs``);
``quote`` is neither resolved nor traversed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic
import pytest

from runtime.engine.client import DirectEngineClient
from runtime.engine.inputs import quote
from runtime.models import TaskRun, TaskRunFilter
from sdk import PrefectFuture, allow_failure, flow, task
from sdk.exceptions import UpstreamTaskError

POST_INITS: list[Any] = []


@dataclasses.dataclass
class Pair:
    """A dataclass holding values (futures when built in the flow)."""

    left: Any
    right: Any
    total: Any = dataclasses.field(init=False, default=None)

    def __post_init__(self) -> None:
        POST_INITS.append((self.left, self.right))
        if isinstance(self.left, int) and isinstance(self.right, int):
            self.total = self.left + self.right


class Order(pydantic.BaseModel):
    """A pydantic model holding futures (allowed as arbitrary types)."""

    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

    quantity: Any
    lines: list[Any]


class Boom(Exception):
    """The user's own exception."""


def runs_by_name(engine: DirectEngineClient) -> dict[str, TaskRun]:
    return {r.name: r for r in engine.stores.runs.list_task_runs(TaskRunFilter()).items}


@task
def number(n: int) -> int:
    return n


def test_dataclass_is_rebuilt_with_results_and_post_init_runs_again(
    engine: DirectEngineClient,
) -> None:
    """Was: the task received the dataclass with the futures still inside."""
    POST_INITS.clear()

    @task
    def use(pair: Pair) -> tuple[int, int, int]:
        return pair.left, pair.right, pair.total

    @flow
    def f() -> tuple[int, int, int]:
        return use(Pair(number.submit(1), number.submit(2)))

    assert f() == (1, 2, 3)
    assert len(POST_INITS) == 2 and POST_INITS[1] == (1, 2)
    assert isinstance(POST_INITS[0][0], PrefectFuture)
    runs = runs_by_name(engine)
    assert sorted(runs["use-0"].task_inputs["pair"]) == sorted(
        [runs["number-0"].id, runs["number-1"].id]
    )


def test_pydantic_model_and_nested_containers(engine: DirectEngineClient) -> None:
    @task
    def use(order: Order, extra: dict[str, Any]) -> int:
        return order.quantity + sum(order.lines) + sum(extra["set"]) + extra["t"][0][0]

    @flow
    def f() -> int:
        order = Order(quantity=number.submit(1), lines=[number.submit(10), 100])
        extra = {"set": {number.submit(1000)}, "t": ((number.submit(5),),)}
        return use(order, extra)

    assert f() == 1 + 10 + 100 + 1000 + 5
    runs = runs_by_name(engine)
    assert len(runs["use-0"].task_inputs["order"]) == 2
    assert len(runs["use-0"].task_inputs["extra"]) == 2


def test_a_failed_future_inside_a_dataclass_stops_the_task(
    engine: DirectEngineClient,
) -> None:
    calls: list[int] = []

    @task
    def bad() -> int:
        raise Boom("inside")

    @task
    def use(pair: Pair) -> None:
        calls.append(1)

    @flow
    def f() -> None:
        use(Pair(bad.submit(), 1))

    with pytest.raises(UpstreamTaskError, match="bad-0"):
        f()
    assert calls == []
    assert runs_by_name(engine)["use-0"].state.type.value == "FAILED"


def test_allow_failure_inside_a_model(engine: DirectEngineClient) -> None:
    error = Boom("tolerated")

    @task
    def bad() -> int:
        raise error

    @task
    def use(order: Order) -> bool:
        return order.lines[0] is error  # resolved inside the model, before the task ran

    @flow
    def f() -> bool:
        return use(Order(quantity=1, lines=[allow_failure(bad.submit())]))

    assert f() is True


def test_quote_passes_the_future_as_it_is(engine: DirectEngineClient) -> None:
    @task
    def use(value: Any) -> bool:
        return isinstance(value, PrefectFuture)

    @flow
    def f() -> bool:
        future = number.submit(1)
        future.wait()
        return use(quote(future))

    assert f() is True
    assert "value" not in runs_by_name(engine)["use-0"].task_inputs


def test_submit_and_map_resolve_nested_futures(engine: DirectEngineClient) -> None:
    @task
    def add(pair: Pair) -> int:
        return pair.total

    @flow
    def f() -> list[int]:
        first = add.submit(Pair(number.submit(1), number.submit(2))).result()
        mapped = add.map([Pair(number.submit(i), 10) for i in range(3)]).result()
        return [first, *mapped]

    assert f() == [3, 10, 11, 12]
