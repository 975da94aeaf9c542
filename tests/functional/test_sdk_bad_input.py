"""Bad input through the SDK and the stores (no API in between): refused, nothing stored.

A flow called with NaN or an infinite parameter, a task-tag limit no route could
address, and states carrying naive datetimes (read as UTC, never a TypeError
inside the orchestration rules).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from runtime.engine.client import DirectEngineClient
from runtime.models import FlowRunCreate, FlowRunFilter, TaskRunFilter
from runtime.states import Running, Scheduled
from runtime.stores import Stores
from sdk import flow, get_client, task


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_a_flow_called_with_a_non_finite_parameter_is_refused(
    engine: DirectEngineClient, stores: Stores, number: float
) -> None:
    ran: list[object] = []

    @flow
    def measure(values: dict[str, list[float]]) -> None:
        ran.append(values)

    with pytest.raises(ValidationError) as exc:
        measure({"v": [1.0, number]})
    assert "(at parameters.values.v.1)" in str(exc.value)
    assert ran == []
    listed = stores.runs.list_flow_runs(FlowRunFilter(flow_name="measure"), limit=10)
    assert listed.items == []


def test_a_finite_float_parameter_round_trips(engine: DirectEngineClient, stores: Stores) -> None:
    @flow
    def scale(factor: float) -> float:
        return factor * 2

    state = scale(1.5, return_state=True)
    assert state.is_completed()
    (run,) = stores.runs.list_flow_runs(FlowRunFilter(flow_name="scale"), limit=10).items
    assert run.parameters == {"factor": 1.5}


def test_a_tag_limit_with_a_slash_is_refused(engine: DirectEngineClient, stores: Stores) -> None:
    with get_client(sync_client=True) as client, pytest.raises(ValidationError) as exc:
        client.create_concurrency_limit(tag="team/data", concurrency_limit=1)
    assert "'/' cannot be part of a limit name" in str(exc.value)
    assert stores.concurrency.list_limits() == []


def test_naive_datetimes_reach_the_rules_as_utc(stores: Stores) -> None:
    run = stores.runs.create_flow_run(FlowRunCreate(flow_name="naive"))
    naive_future = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    result = stores.runs.set_state("flow_run", run.id, Scheduled(scheduled_time=naive_future))
    assert result.status == "ACCEPT", result
    stored = stores.runs.read_flow_run(run.id)
    assert stored.state.details.scheduled_time == naive_future.replace(tzinfo=UTC)
    # a scheduled time an hour away makes Running wait, as for an aware time
    waited = stores.runs.set_state("flow_run", run.id, Running())
    assert waited.status == "WAIT" and waited.delay_seconds > 3000, waited


def test_run_names_rendered_from_parameters_are_escaped(
    engine: DirectEngineClient, stores: Stores
) -> None:
    @task(task_run_name="load-{path}")
    def load(path: str) -> str:
        return path

    @flow(flow_run_name="import-{path}")
    def importer(path: str) -> str:
        return load(path)

    assert importer("a\nb\x1b[31m") == "a\nb\x1b[31m"  # the values themselves are untouched
    (run,) = stores.runs.list_flow_runs(FlowRunFilter(flow_name="importer"), limit=10).items
    assert run.name == "import-a\\nb\\x1b[31m"
    (task_run,) = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=run.id), limit=10).items
    assert task_run.name == "load-a\\nb\\x1b[31m"
