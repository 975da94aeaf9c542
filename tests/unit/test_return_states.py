"""Pure rules: a return value's final state, the collection visitor, the parameter schema.

The oracle is Prefect 3: ``return_value_to_state`` / ``StateGroup`` /
``get_state_exception`` in src/prefect/states.py (and tests/test_states.py),
``visit_collection`` in src/prefect/utilities/collections.py and
``parameter_schema`` in src/prefect/utilities/callables/__init__.py.
"""

from __future__ import annotations

import dataclasses
from collections import namedtuple
from typing import Any

import pydantic
import pytest

from runtime.engine.collections import visit_collection
from runtime.engine.exceptions import CancelledRun, CrashedRun, FailedRun
from runtime.engine.inputs import allow_failure, quote, unmapped, upstream_run_ids
from runtime.engine.parameter_schema import ParameterSchema, parameter_schema
from runtime.engine.results import state_exception, state_result
from runtime.engine.return_states import (
    is_state_iterable,
    mark_run_state,
    return_value_to_state,
)
from runtime.states import (
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Running,
    State,
    StateType,
)


def run_state(state: State, run_id: str = "run-1") -> State:
    """A state as a run's engine produced it (not one made by hand)."""
    return mark_run_state(state, run_id)


class TestReturnValueToState:
    """Prefect's ``return_value_to_state`` (src/prefect/states.py)."""

    def test_plain_data_completes_with_the_data(self) -> None:
        state, data = return_value_to_state({"a": 1})
        assert state.type is StateType.COMPLETED and state.name == "Completed"
        assert data == {"a": 1} and state.result() == {"a": 1}

    def test_a_generator_is_listed(self) -> None:
        state, data = return_value_to_state(i for i in range(3))
        assert data == [0, 1, 2] and state.result() == [0, 1, 2]

    def test_a_manual_state_is_used_as_given(self) -> None:
        returned = Completed(message="No work to do", name="Skipped")
        state, data = return_value_to_state(returned)
        assert (state.type, state.name, state.message) == (
            StateType.COMPLETED,
            "Skipped",
            "No work to do",
        )
        assert data is None and state.result() is None

    def test_a_manual_failed_state_with_data(self) -> None:
        """Prefect's tests/test_flows.py::test_final_state_respects_returned_state."""
        returned = State(type=StateType.FAILED, name="Failed", message="Test returned state")
        returned.with_data("hello!")
        state, data = return_value_to_state(returned)
        assert state.type is StateType.FAILED and state.message == "Test returned state"
        assert data == "hello!"
        assert state.result(raise_on_failure=False) == "hello!"
        with pytest.raises(FailedRun, match="hello!"):  # a string datum is the message
            state.result()

    def test_a_manual_failed_state_without_data_raises_failed_run(self) -> None:
        state, data = return_value_to_state(Failed(message="bad input"))
        assert data is None
        with pytest.raises(FailedRun, match="bad input"):
            state.result()
        assert isinstance(state.result(raise_on_failure=False), FailedRun)

    @pytest.mark.parametrize(
        ("make", "kind", "error"),
        [(Cancelled, StateType.CANCELLED, CancelledRun), (Crashed, StateType.CRASHED, CrashedRun)],
    )
    def test_a_manual_cancelled_or_crashed_state(
        self, make: Any, kind: StateType, error: type[Exception]
    ) -> None:
        state, _ = return_value_to_state(make(message="stop"))
        assert state.type is kind and state.message == "stop"
        with pytest.raises(error, match="stop"):
            state.result()

    def test_a_run_state_is_aggregated(self) -> None:
        """A state a run produced is not 'manual': the aggregate rule gives a new state."""
        inner = run_state(Failed(message="inner").with_data(ValueError("Test")))
        state, data = return_value_to_state(inner)
        assert state.type is StateType.FAILED and state.message == "1/1 states failed."
        assert data is inner
        assert state.result(raise_on_failure=False) is inner
        with pytest.raises(ValueError, match="Test"):
            state.result()

    def test_all_completed(self) -> None:
        """tests/test_states.py: 'All states completed.'"""
        states = [run_state(Completed().with_data(i)) for i in range(3)]
        state, _ = return_value_to_state(states)
        assert state.type is StateType.COMPLETED and state.message == "All states completed."
        assert state.result() is states  # a completed aggregate's data: the states

    def test_some_failed_gives_n_of_m(self) -> None:
        """tests/test_flows.py::test_flow_state_reflects_returned_multiple_task_run_states."""
        first = run_state(Failed().with_data(ValueError("Test 1")))
        second = run_state(Crashed().with_data(ValueError("Test 2")))
        third = run_state(Completed().with_data(True))
        state, _ = return_value_to_state((first, second, third))
        assert state.type is StateType.FAILED and state.message == "2/3 states failed."
        with pytest.raises(ValueError, match="Test 1"):  # the first failure's exception
            state.result()
        assert state.result(raise_on_failure=False) == (first, second, third)

    def test_cancelled_wins_over_failed(self) -> None:
        """tests/test_flows.py::test_flow_state_with_cancelled_tasks_has_cancelled_state."""
        states = (
            run_state(Cancelled()),
            run_state(Completed().with_data(1)),
            run_state(Failed().with_data(ValueError("x"))),
        )
        state, _ = return_value_to_state(states)
        assert state.type is StateType.CANCELLED and state.message == "1/3 states cancelled."
        with pytest.raises(CancelledRun):
            state.result()

    def test_paused(self) -> None:
        """tests/test_states.py: '1/2 states paused.'"""
        state, _ = return_value_to_state([run_state(Paused()), run_state(Completed())])
        assert state.type is StateType.PAUSED and state.message == "1/2 states paused."

    def test_not_final(self) -> None:
        """tests/test_states.py: '2/3 states are not final.'"""
        states = [run_state(Pending()), run_state(Running()), run_state(Completed())]
        state, _ = return_value_to_state(states)
        assert state.type is StateType.FAILED and state.message == "2/3 states are not final."

    def test_manual_states_in_a_list_are_aggregated(self) -> None:
        """Only a single manual state is taken as given; a list of states is aggregated."""
        state, _ = return_value_to_state([Completed(), Failed(message="x")])
        assert state.type is StateType.FAILED and state.message == "1/2 states failed."

    @pytest.mark.parametrize(
        "value",
        [[], {"a": Completed()}, [Completed(), 1], "Completed"],
    )
    def test_only_nonempty_lists_tuples_sets_of_states_aggregate(self, value: Any) -> None:
        """Prefect's ``is_state_iterable``: dicts and mixed lists are plain data."""
        assert not is_state_iterable(value)
        state, data = return_value_to_state(value)
        assert state.type is StateType.COMPLETED and data is value


class TestStateException:
    def test_wrapper_types(self) -> None:
        assert isinstance(state_exception(Failed(message="m")), FailedRun)
        assert isinstance(state_exception(Crashed(message="m")), CrashedRun)
        assert isinstance(state_exception(Cancelled(message="m")), CancelledRun)

    def test_exception_data_is_raised_as_it_is(self) -> None:
        error = KeyError("k")
        assert state_result(Failed().with_data(error), raise_on_failure=False) is error


class TestVisitCollection:
    """Prefect's ``visit_collection`` (src/prefect/utilities/collections.py)."""

    @staticmethod
    def double_ints(value: Any) -> Any:
        def visit(expr: Any, context: dict[str, Any]) -> Any:
            return expr * 2 if type(expr) is int else expr

        return visit_collection(value, visit, return_data=True)

    def test_nested_builtins(self) -> None:
        value = {"a": [1, (2, {3})], "b": frozenset({4})}
        assert self.double_ints(value) == {"a": [2, (4, {6})], "b": frozenset({8})}

    def test_named_tuple_keeps_its_type(self) -> None:
        Point = namedtuple("Point", "x y")
        result = self.double_ints(Point(1, 2))
        assert type(result) is Point and result == Point(2, 4)

    def test_dataclass_is_rebuilt_and_post_init_runs_again(self) -> None:
        calls: list[int] = []

        @dataclasses.dataclass
        class Box:
            x: int
            total: int = dataclasses.field(init=False, default=0)

            def __post_init__(self) -> None:
                calls.append(self.x)
                self.total = self.x + 100

        box = Box(1)
        result = self.double_ints(box)
        assert result is not box and result.x == 2 and result.total == 102
        assert calls == [1, 2]

    def test_unchanged_containers_are_not_copied(self) -> None:
        value = {"a": ["x", "y"]}
        assert self.double_ints(value) is value

    def test_pydantic_model_is_rebuilt_without_validation(self) -> None:
        class Model(pydantic.BaseModel):
            x: int
            items: list[int]

        result = self.double_ints(Model(x=1, items=[2, 3]))
        assert isinstance(result, Model) and result.x == 2 and result.items == [4, 6]

    def test_cycles_terminate(self) -> None:
        value: list[Any] = [1]
        value.append(value)
        result = self.double_ints(value)
        assert result[0] == 2

    def test_quote_is_not_entered_and_annotations_removed(self) -> None:
        def visit(expr: Any, context: dict[str, Any]) -> Any:
            if isinstance(context.get("annotation"), quote):
                from runtime.engine.collections import StopVisiting

                raise StopVisiting
            return expr * 2 if type(expr) is int else expr

        value = [quote([1]), unmapped(2), allow_failure(3)]
        result = visit_collection(value, visit, return_data=True, remove_annotations=True)
        assert result == [[1], 4, 6]

    def test_upstream_run_ids_skip_quoted_values(self) -> None:
        first, second = run_state(Completed(), "a"), run_state(Completed(), "b")
        assert upstream_run_ids([first, {"k": second}, quote(run_state(Completed(), "c"))]) == [
            "a",
            "b",
        ]


class Point(pydantic.BaseModel):
    """A model parameter (module level: annotations are strings resolved in the module)."""

    x: int


class TestParameterSchema:
    """Prefect's ``parameter_schema`` (src/prefect/utilities/callables/__init__.py)."""

    def test_shape_and_required(self) -> None:
        def fn(x: int, y: str = "a", z=None) -> None:  # type: ignore[no-untyped-def]
            """Do it.

            Args:
                x: the count
                y: a label
            """

        schema = parameter_schema(fn)
        assert isinstance(schema, ParameterSchema)
        assert schema.title == "Parameters" and schema.type == "object"
        assert schema.required == ["x"]
        assert schema.properties["x"] == {
            "title": "x",
            "type": "integer",
            "description": "the count",
            "position": 0,
        }
        assert schema.properties["y"]["default"] == "a"
        assert schema.properties["z"] == {"title": "z", "default": None, "position": 2}
        dumped = schema.model_dump()
        assert set(dumped) == {"title", "type", "properties", "required", "definitions"}

    def test_models_go_under_definitions_and_self_is_left_out(self) -> None:
        def method(self, p: Point) -> None:  # type: ignore[no-untyped-def]
            pass

        schema = parameter_schema(method)
        assert list(schema.properties) == ["p"]
        assert schema.properties["p"]["$ref"] == "#/definitions/Point"
        assert "Point" in schema.definitions

    def test_an_unknown_class_has_an_empty_schema(self) -> None:
        class Thing:
            pass

        def fn(t: Thing) -> None:
            pass

        assert parameter_schema(fn).properties["t"] == {"title": "t", "position": 0}
        assert parameter_schema(fn).model_dump_for_openapi()["required"] == ["t"]
