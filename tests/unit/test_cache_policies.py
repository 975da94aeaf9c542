"""Cache policies (``sdk.cache_policies``): which calls share a key, and loud failures."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sdk.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyContext,
    CacheKeyError,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    Inputs,
    hash_objects,
    task_source_hash,
)


def add(x: int, y: int) -> int:
    return x + y


def add_v2(x: int, y: int) -> int:
    return x + y + 0


def ctx(**overrides: Any) -> CacheKeyContext:
    fields: dict[str, Any] = {
        "task_key": "add",
        "task_fn": add,
        "flow_run_id": "flow-run-1",
        "task_run_id": "task-run-1",
    }
    fields.update(overrides)
    return CacheKeyContext(**fields)


def key(policy: CachePolicy, inputs: dict[str, Any], flow_parameters: Any = None, **c: Any) -> Any:
    return policy.compute_key(ctx(**c), inputs, flow_parameters or {})


class Point(BaseModel):
    x: int
    y: int


@dataclass
class Box:
    size: int


# ---------------------------------------------------------------------- hash_objects


class TestHashObjects:
    def test_stable_and_order_insensitive_for_dicts_and_sets(self) -> None:
        assert hash_objects({"a": 1, "b": 2}) == hash_objects({"b": 2, "a": 1})
        assert hash_objects({"x", "y", "z"}) == hash_objects({"z", "y", "x"})
        assert hash_objects(1) != hash_objects(2)
        assert hash_objects(1, 2) != hash_objects(2, 1)

    def test_same_digest_in_another_process(self) -> None:
        """Set order depends on PYTHONHASHSEED; the digest must not."""
        value = {"tags": {"alpha", "beta", "gamma", "delta"}, "n": 3}
        code = (
            "from sdk.cache_policies import hash_objects;"
            "print(hash_objects({'tags': {'alpha', 'beta', 'gamma', 'delta'}, 'n': 3}))"
        )
        root = Path(__file__).resolve().parents[2]
        digests = {
            subprocess.run(
                [sys.executable, "-c", code],
                cwd=root,
                env={"PYTHONHASHSEED": seed, "PATH": ""},
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for seed in ("1", "2", "3")
        }
        assert digests == {hash_objects(value)}

    def test_pydantic_models_datetimes_uuids_dataclasses(self) -> None:
        u = uuid.UUID(int=7)
        when = datetime(2024, 1, 2, tzinfo=UTC)
        assert hash_objects(Point(x=1, y=2), when, u, Box(3)) == hash_objects(
            Point(x=1, y=2), when, u, Box(3)
        )
        assert hash_objects(Point(x=1, y=2)) != hash_objects(Point(x=2, y=1))

    def test_falls_back_to_cloudpickle(self) -> None:
        assert len(hash_objects(add)) == 64
        assert hash_objects(b"\xff\x00") == hash_objects(b"\xff\x00")

    def test_unhashable_raises_cache_key_error(self) -> None:
        with pytest.raises(CacheKeyError, match="lock"):
            hash_objects(threading.Lock())

    def test_generators_are_not_consumed(self) -> None:
        gen = (i for i in range(3))
        with pytest.raises(CacheKeyError):
            hash_objects(gen)
        assert list(gen) == [0, 1, 2]


def test_task_source_hash_changes_with_source_and_survives_missing_source() -> None:
    assert task_source_hash(add) == task_source_hash(add)
    assert task_source_hash(add) != task_source_hash(add_v2)
    namespace: dict[str, Any] = {}
    exec("def f(a):\n    return a * 2\n", namespace)
    exec("def g(a):\n    return a * 3\n", namespace)
    assert len(task_source_hash(namespace["f"])) == 64
    assert task_source_hash(namespace["f"]) != task_source_hash(namespace["g"])


# ---------------------------------------------------------------------- policies


class TestInputs:
    def test_same_inputs_same_key(self) -> None:
        assert key(INPUTS, {"x": 1, "y": 2}) == key(INPUTS, {"y": 2, "x": 1})
        assert key(INPUTS, {"x": 1, "y": 2}) != key(INPUTS, {"x": 1, "y": 3})

    def test_ignores_run_ids_and_source(self) -> None:
        a = key(INPUTS, {"x": 1}, flow_run_id="r1", task_fn=add)
        b = key(INPUTS, {"x": 1}, flow_run_id="r2", task_fn=add_v2)
        assert a == b

    def test_subtracting_a_parameter_ignores_it(self) -> None:
        policy = INPUTS - "x"
        assert isinstance(policy, Inputs)
        assert key(policy, {"x": 1, "y": 2}) == key(policy, {"x": 99, "y": 2})
        assert key(policy, {"x": 1, "y": 2}) != key(policy, {"x": 1, "y": 3})
        both = INPUTS - "x" - "y"
        assert key(both, {"x": 1, "y": 2}) == key(both, {"x": 5, "y": 6})
        assert INPUTS.exclude == []  # the shared instance is untouched

    def test_no_inputs_still_caches(self) -> None:
        assert key(INPUTS, {}) is not None

    def test_unhashable_input_error_names_the_parameter(self) -> None:
        with pytest.raises(CacheKeyError, match="'conn'") as info:
            key(INPUTS, {"n": 1, "conn": threading.Lock()})
        assert info.value.details["parameter"] == "conn"
        assert 'INPUTS - "conn"' in str(info.value)
        assert isinstance(info.value.__cause__, CacheKeyError)
        # ... and excluding it makes the key computable.
        assert key(INPUTS - "conn", {"n": 1, "conn": threading.Lock()}) is not None


def test_task_source() -> None:
    assert key(TASK_SOURCE, {"x": 1}) == key(TASK_SOURCE, {"x": 2})
    assert key(TASK_SOURCE, {}, task_fn=add) != key(TASK_SOURCE, {}, task_fn=add_v2)
    assert key(TASK_SOURCE, {}, task_source="def a(): 1") != key(
        TASK_SOURCE, {}, task_source="def a(): 2"
    )
    assert key(TASK_SOURCE, {}, task_fn=None, task_source="") is None


def test_flow_parameters() -> None:
    assert key(FLOW_PARAMETERS, {"x": 1}, {"p": 1}) == key(FLOW_PARAMETERS, {"x": 2}, {"p": 1})
    assert key(FLOW_PARAMETERS, {}, {"p": 1}) != key(FLOW_PARAMETERS, {}, {"p": 2})


def test_run_id() -> None:
    assert key(RUN_ID, {"x": 1}, flow_run_id="a") == key(RUN_ID, {"x": 2}, flow_run_id="a")
    assert key(RUN_ID, {}, flow_run_id="a") != key(RUN_ID, {}, flow_run_id="b")
    # Without a flow run, the task run id: two standalone task runs never share.
    assert key(RUN_ID, {}, flow_run_id=None, task_run_id="t1") == key(
        RUN_ID, {}, flow_run_id=None, task_run_id="t1"
    )
    assert key(RUN_ID, {}, flow_run_id=None, task_run_id="t1") != key(
        RUN_ID, {}, flow_run_id=None, task_run_id="t2"
    )
    assert key(RUN_ID, {}, flow_run_id=None, task_run_id=None) is None


@pytest.mark.parametrize(
    "policy",
    [
        INPUTS,
        INPUTS - "y",
        TASK_SOURCE,
        FLOW_PARAMETERS,
        RUN_ID,
        DEFAULT,
        INPUTS + FLOW_PARAMETERS,
        INPUTS + CacheKeyFnPolicy(lambda c, p: "literal"),
    ],
    ids=repr,
)
def test_policy_keys_include_the_task_key(policy: CachePolicy) -> None:
    """Two different tasks with the same inputs never share an entry (issue 7, item 6)."""
    inputs, params = {"x": 1}, {"p": 1}
    one = key(policy, inputs, params, task_key="extract-1a2b3c4d")
    assert one is not None
    assert one == key(policy, inputs, params, task_key="extract-1a2b3c4d")
    assert one != key(policy, inputs, params, task_key="load-5e6f7a8b")


def test_policies_with_the_same_values_do_not_collide() -> None:
    """INPUTS of {} and FLOW_PARAMETERS of {} are different keys for one task."""
    assert key(INPUTS, {}, {}) != key(FLOW_PARAMETERS, {}, {})


def test_a_cache_key_fn_key_stays_literal_and_shared_on_purpose() -> None:
    policy = CacheKeyFnPolicy(lambda c, p: f"report-{p['day']}")
    assert key(policy, {"day": 3}, task_key="a") == "report-3"
    assert key(policy, {"day": 3}, task_key="b") == "report-3"


def test_no_cache_returns_none_and_is_neutral_in_sums() -> None:
    assert key(NO_CACHE, {"x": 1}) is None
    assert NO_CACHE + INPUTS == INPUTS
    assert INPUTS + NO_CACHE == INPUTS
    assert key(INPUTS + TASK_SOURCE + NO_CACHE, {"x": 1}) == key(INPUTS + TASK_SOURCE, {"x": 1})


class TestDefaultAndCompound:
    def test_default_is_inputs_source_run_id(self) -> None:
        assert isinstance(DEFAULT, CompoundCachePolicy)
        assert [type(p).__name__ for p in DEFAULT.policies] == ["Inputs", "TaskSource", "RunId"]

    def test_default_differs_across_run_ids(self) -> None:
        assert key(DEFAULT, {"x": 1}, flow_run_id="r1") != key(DEFAULT, {"x": 1}, flow_run_id="r2")
        assert key(DEFAULT, {"x": 1}, flow_run_id="r1") == key(DEFAULT, {"x": 1}, flow_run_id="r1")

    def test_default_differs_across_inputs_and_source(self) -> None:
        base = key(DEFAULT, {"x": 1})
        assert key(DEFAULT, {"x": 2}) != base
        assert key(DEFAULT, {"x": 1}, task_fn=add_v2) != base

    def test_combining_with_plus(self) -> None:
        policy = INPUTS + FLOW_PARAMETERS
        a = key(policy, {"x": 1}, {"p": 1})
        assert a == key(policy, {"x": 1}, {"p": 1}, flow_run_id="other")
        assert a != key(policy, {"x": 2}, {"p": 1})
        assert a != key(policy, {"x": 1}, {"p": 2})
        # A compound's key is not any component's own key.
        assert a not in (key(INPUTS, {"x": 1}), key(FLOW_PARAMETERS, {}, {"p": 1}))

    def test_nested_compounds_flatten_and_inputs_merge(self) -> None:
        policy = (INPUTS - "a") + (TASK_SOURCE + (INPUTS - "b"))
        assert isinstance(policy, CompoundCachePolicy)
        assert [type(p).__name__ for p in policy.policies] == ["Inputs", "TaskSource"]
        assert key(policy, {"a": 1, "b": 2, "c": 3}) == key(policy, {"a": 9, "b": 9, "c": 3})

    def test_subtracting_from_a_compound(self) -> None:
        policy = DEFAULT - "x"
        assert key(policy, {"x": 1, "y": 2}) == key(policy, {"x": 2, "y": 2})
        assert key(policy, {"x": 1, "y": 2}) != key(policy, {"x": 1, "y": 3})
        assert (TASK_SOURCE + RUN_ID) - "x" == TASK_SOURCE + RUN_ID

    def test_all_none_components_give_none(self) -> None:
        policy = RUN_ID + TASK_SOURCE
        assert key(policy, {}, flow_run_id=None, task_run_id=None, task_fn=None) is None

    def test_subtracting_a_non_string_is_a_type_error(self) -> None:
        with pytest.raises(TypeError):
            INPUTS - 3  # type: ignore[operator]
        with pytest.raises(TypeError):
            INPUTS + "x"  # type: ignore[operator]


class TestCacheKeyFn:
    def test_receives_context_and_parameters(self) -> None:
        seen: list[tuple[CacheKeyContext, dict[str, Any]]] = []

        def fn(context: CacheKeyContext, parameters: dict[str, Any]) -> str:
            seen.append((context, parameters))
            return f"n={parameters['n']}"

        policy = CacheKeyFnPolicy(fn)
        assert key(policy, {"n": 3}) == "n=3"
        assert seen[0][0].task_key == "add"
        assert CachePolicy.from_cache_key_fn(fn) == policy

    def test_none_means_no_cache(self) -> None:
        assert key(CacheKeyFnPolicy(lambda c, p: None), {"n": 1}) is None

    def test_a_raising_cache_key_fn_raises_cache_key_error(self) -> None:
        def broken(context: CacheKeyContext, parameters: dict[str, Any]) -> str:
            return str(parameters["missing"])

        with pytest.raises(CacheKeyError, match="KeyError") as info:
            key(CacheKeyFnPolicy(broken), {"n": 1})
        assert isinstance(info.value.__cause__, KeyError)

    def test_a_raising_component_fails_the_whole_compound(self) -> None:
        """Prefect #15861: a failing component must not leave a shared key of the others."""

        def broken(context: CacheKeyContext, parameters: dict[str, Any]) -> str:
            raise RuntimeError("database down")

        policy = TASK_SOURCE + CacheKeyFnPolicy(broken)
        with pytest.raises(CacheKeyError, match="database down") as info:
            key(policy, {"n": 1})
        assert isinstance(info.value.__cause__, RuntimeError)
        with pytest.raises(CacheKeyError, match="'conn'"):
            key(DEFAULT, {"conn": threading.Lock()})

    def test_a_non_string_key_is_rejected(self) -> None:
        with pytest.raises(CacheKeyError, match="must be a str"):
            key(CacheKeyFnPolicy(lambda c, p: 42), {})  # type: ignore[arg-type,return-value]


def test_custom_policy_failures_are_wrapped() -> None:
    class Flaky(CachePolicy):
        def compute_key(
            self,
            task_ctx: CacheKeyContext,
            inputs: dict[str, Any],
            flow_parameters: dict[str, Any],
            **kwargs: Any,
        ) -> str | None:
            raise ZeroDivisionError("oops")

    with pytest.raises(CacheKeyError, match="oops") as info:
        key(Flaky() + INPUTS, {"x": 1})
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert issubclass(CacheKeyError, ValueError)
