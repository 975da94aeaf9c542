"""The engine over the HTTP API and directly, with states too big for a naive item (issue 7,
item 7): the flow ends in its real state, every task run is recorded, a record the API
refuses for good is isolated and reported instead of retried forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from runtime.engine.backend import use_engine_client
from runtime.engine.client import BufferedEngineClient, DirectEngineClient
from runtime.engine.http_engine_client import ApiEngineClient
from runtime.limits import ITEM_BUDGET_BYTES, item_size
from runtime.models import FlowRunCreate, TaskRun, TaskRunFilter
from runtime.states import Completed, Running, StateType
from runtime.stores import Stores
from sdk import flow, task


@pytest.fixture(params=["direct", "api"])
def engine(
    request: pytest.FixtureRequest, stores: Stores, api: str
) -> Iterator[BufferedEngineClient]:
    client: BufferedEngineClient
    if request.param == "direct":
        client = DirectEngineClient(stores)
    else:
        client = ApiEngineClient(api, record_interval=0.05, log_interval=0.05)
    with use_engine_client(client):
        yield client
    client.close()


def test_retries_raising_a_50kb_message_end_failed_with_the_task_recorded(
    engine: BufferedEngineClient, stores: Stores
) -> None:
    @task(retries=8, retry_delay_seconds=0)
    def noisy() -> None:
        raise ValueError("e" * 50_000)

    @flow
    def parent() -> None:
        noisy()

    assert parent(return_state=True).type is StateType.FAILED
    (flow_run,) = stores.runs.list_flow_runs().items
    assert flow_run.state.type is StateType.FAILED
    (task_run,) = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run.id)).items
    assert task_run.state.type is StateType.FAILED and task_run.run_count == 9
    item = stores.db.get(stores.specs.runs.name, {"id": task_run.id})
    assert item is not None and item_size(item) <= ITEM_BUDGET_BYTES


def test_records_refused_by_the_api_are_isolated_and_logged(
    engine: BufferedEngineClient, stores: Stores
) -> None:
    flow_run = stores.runs.create_flow_run(FlowRunCreate(flow_name="f"))
    stores.runs.set_state("flow_run", flow_run.id, Running())
    good = [
        TaskRun(id=str(uuid.uuid4()), name=f"t-{i}", task_key="t", flow_run_id=flow_run.id)
        for i in range(5)
    ]
    finished = stores.runs.create_flow_run(FlowRunCreate(flow_name="f"))
    stores.runs.set_state("flow_run", finished.id, Running())
    stores.runs.set_state("flow_run", finished.id, Completed())
    late = TaskRun(id=str(uuid.uuid4()), name="late-0", task_key="late", flow_run_id=finished.id)
    for run in [*good[:2], late, *good[2:]]:
        engine.record_task_run(run, [run.state])
    engine.flush()
    engine.flush()
    stored = {r.id for r in stores.runs.list_task_runs().items}
    if isinstance(engine, ApiEngineClient):  # guarded: the late record is refused
        assert stored == {r.id for r in good}
        messages = [line.message for line in stores.logs.read(finished.id).items]
        assert any(late.id in m and "could not be recorded" in m for m in messages), messages
    else:  # the engine's own process writes its records unconditionally
        assert stored == {r.id for r in [*good, late]}
