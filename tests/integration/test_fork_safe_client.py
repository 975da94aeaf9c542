"""A forked process creating a run through the HTTP client gets its own run (real ``os.fork()``).

The client picks a new run's id itself (so that a retry finds the run its first
attempt created). If a forked child drew the same id as its parent, its create
would find the parent's run taken and return that run as its own.
"""

from __future__ import annotations

import os

from runtime.models import FlowRunCreate, new_id
from sdk.http_client import StratoflowClient


def test_parent_and_forked_child_create_distinct_runs(api: str, prefix: str) -> None:
    new_id()  # this process has drawn ids before it forks, as a worker has
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh client (no pooled sockets shared with the parent)
        code = 1
        try:
            os.close(read_end)
            with StratoflowClient(api) as child_client:
                run = child_client.create_flow_run(FlowRunCreate(flow_name=f"child-{prefix}"))
            os.write(write_end, f"{run.id} {run.flow_name}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_id, child_flow = pipe.read().split()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with StratoflowClient(api) as client:
        mine = client.create_flow_run(FlowRunCreate(flow_name=f"parent-{prefix}"))
        assert child_flow == f"child-{prefix}"
        assert mine.id != child_id
        assert mine.flow_name == f"parent-{prefix}"
        assert client.read_flow_run(child_id).flow_name == f"child-{prefix}"
