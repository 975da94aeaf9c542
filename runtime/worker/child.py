"""The child process that executes one claimed flow run: ``python -m runtime.worker.child``.

The worker starts it with the job as JSON on stdin (:class:`Job`): the run's id,
the entrypoint, the code directory and the deployment's parameters. The child
loads the flow from the code directory, merges the run's parameters over the
deployment's, validates them against the flow's signature and executes the run (its result
persisted unless the flow says ``persist_result=False``: whoever submitted the
run reads it from another process)
with the flow engine against the stores named by its environment (the worker
passes its own AWS endpoint and prefix). Run logs go to the log store as in any
flow run.

Exit status: 0 once the run reached a final state (whatever it is), 1 when the
flow could not be loaded (the run is then Crashed with the reason), 2 when the
engine itself failed (a store unreachable: the worker crashes the run). Any other
status (``os._exit``, a signal) means the process died: the worker ends the run
Crashed with that status. Only what running a flow needs is imported.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("stratoflow.flow_runs")

EXIT_LOAD_FAILED = 1
EXIT_ENGINE_FAILED = 2


@dataclass(frozen=True)
class Job:
    """What a worker asks its child to execute."""

    flow_run_id: str
    entrypoint: str
    code_dir: str
    deployment_parameters: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The job as the child reads it on stdin."""
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Job:
        """Parse the job the worker wrote."""
        data = json.loads(text)
        return cls(
            flow_run_id=str(data["flow_run_id"]),
            entrypoint=str(data["entrypoint"]),
            code_dir=str(data["code_dir"]),
            deployment_parameters=dict(data.get("deployment_parameters") or {}),
        )


def merged_parameters(deployment: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The deployment's parameters with the run's over them (Prefect's merge)."""
    return {**deployment, **run}


def execute(job: Job) -> int:
    """Execute the job's flow run; the process's exit status (see the module docstring)."""
    from runtime.engine.backend import get_engine_client
    from runtime.engine.flow_engine import run_claimed_flow
    from runtime.engine.runlogs import setup_logging
    from runtime.states import Crashed, Failed
    from runtime.worker.code import load_flow

    setup_logging()
    client = get_engine_client()
    run = client.read_flow_run(job.flow_run_id)
    extra = {"flow_run_id": run.id, "task_run_id": None, "run_name": f"Flow run {run.name!r}"}
    code_dir = Path(job.code_dir)
    try:
        flow = load_flow(job.entrypoint, code_dir)
    except Exception as exc:
        logger.error("Could not load the flow from %r", job.entrypoint, exc_info=exc, extra=extra)
        message = f"Could not load the flow from {job.entrypoint!r}: {type(exc).__name__}: {exc}"
        client.set_flow_run_state(run.id, Crashed(message=message))
        client.flush()
        return EXIT_LOAD_FAILED
    os.chdir(code_dir)
    if flow._options.get("persist_result") is None:  # its caller reads the result elsewhere
        flow = flow.with_options(persist_result=True)
    try:
        parameters = flow.validate_parameters(
            merged_parameters(job.deployment_parameters, run.parameters)
        )
    except Exception as exc:
        message = f"Validation of flow parameters failed with error: {exc}"
        logger.error(message, extra=extra)
        client.set_flow_run_state(run.id, Failed(message=message))
        client.flush()
        return 0
    run_claimed_flow(flow, run, parameters, client=client)
    client.close()
    return 0


def main() -> None:
    """Read the job from stdin, execute it, and exit (threads the flow left do not hold it)."""
    job = Job.from_json(sys.stdin.read())
    try:
        code = execute(job)
    except Exception:  # the engine recorded what it could; the worker crashes the run
        traceback.print_exc()
        code = EXIT_ENGINE_FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
