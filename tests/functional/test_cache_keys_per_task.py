"""Policy-computed cache keys belong to one task; a ``cache_key_fn`` key is shared on purpose.

Issue 7, item 6: with ``cache_policy=INPUTS`` two unrelated tasks called with
``x=1`` got one another's cached value, installation-wide. Flows run with the
engine writing to moto in-process (``engine`` fixture).
"""

from __future__ import annotations

from typing import Any

from runtime.engine.client import DirectEngineClient
from runtime.states import State
from sdk import flow, task
from sdk.cache_policies import DEFAULT, FLOW_PARAMETERS, INPUTS, TASK_SOURCE


def test_two_tasks_with_the_same_inputs_do_not_share_an_entry(
    engine: DirectEngineClient,
) -> None:
    computed: list[str] = []

    @task(cache_policy=INPUTS)
    def price(x: int) -> str:
        computed.append("price")
        return f"price of {x}"

    @task(cache_policy=INPUTS)
    def stock(x: int) -> str:
        computed.append("stock")
        return f"stock of {x}"

    @task(cache_policy=INPUTS + TASK_SOURCE + FLOW_PARAMETERS)
    def report(x: int) -> str:
        computed.append("report")
        return f"report of {x}"

    @flow
    def shop() -> list[State]:
        return [t(1, return_state=True) for t in (price, stock, report)]

    first = shop()
    assert [s.result() for s in first] == ["price of 1", "stock of 1", "report of 1"]
    assert [s.name for s in first] == ["Completed"] * 3
    assert len({s.details.cache_key for s in first}) == 3
    again = shop()
    assert [s.name for s in again] == ["Cached"] * 3
    assert [s.result() for s in again] == ["price of 1", "stock of 1", "report of 1"]
    assert computed == ["price", "stock", "report"]


def test_the_default_policy_is_per_task_within_a_flow_run(engine: DirectEngineClient) -> None:
    @task(cache_policy=DEFAULT)
    def first(x: int) -> str:
        return "first"

    @task(cache_policy=DEFAULT)
    def second(x: int) -> str:
        return "second"

    @flow
    def both() -> list[Any]:
        return [first(1), second(1), first(1)]

    assert both() == ["first", "second", "first"]


def test_a_cache_key_fn_shares_an_entry_across_tasks_on_purpose(
    engine: DirectEngineClient,
) -> None:
    computed: list[str] = []

    def by_day(context: Any, parameters: dict[str, Any]) -> str:
        return f"daily-report-{parameters['day']}"

    @task(cache_key_fn=by_day)
    def build(day: int) -> str:
        computed.append("build")
        return f"report {day}"

    @task(cache_key_fn=by_day)
    def rebuild(day: int) -> str:
        computed.append("rebuild")
        return f"another report {day}"

    @flow
    def reports() -> list[State]:
        return [build(7, return_state=True), rebuild(7, return_state=True)]

    built, rebuilt = reports()
    assert built.details.cache_key == rebuilt.details.cache_key == "daily-report-7"
    assert rebuilt.name == "Cached" and rebuilt.result() == "report 7"
    assert computed == ["build"]


def _repl_task(constant: int) -> Any:
    """A task whose function has no source file (as typed in a REPL): only its code object."""
    namespace: dict[str, Any] = {}
    code = compile(f"def scale(x):\n    return x * {constant}\n", "<stdin>", "exec")
    exec(code, namespace)
    return task(cache_policy=TASK_SOURCE)(namespace["scale"])


def test_repl_tasks_differing_only_in_a_constant_get_different_keys(
    engine: DirectEngineClient,
) -> None:
    double, triple = _repl_task(2), _repl_task(3)
    assert double.source_fingerprint != triple.source_fingerprint
    assert double.task_key != triple.task_key

    @flow
    def scale_both() -> list[int]:
        return [double(5), triple(5)]

    assert scale_both() == [10, 15]  # the second is not the first one's cached value
    keys = {r.key for r in engine.stores.cache.list()}
    assert len(keys) == 2


def test_a_task_fingerprint_is_the_cache_policies_source_hash() -> None:
    from runtime.cache_policies import task_source_hash

    double = _repl_task(2)
    assert double.source_fingerprint == task_source_hash(double.fn)

    @task
    def with_source(x: int) -> int:
        return x

    assert with_source.source_fingerprint == task_source_hash(with_source.fn)
