"""``stratoflow flow-run``: list, inspect, read logs of, cancel and set the state of flow runs."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdk.cli._client import ApiUrl, Json, api_command, connect, paginate
from sdk.cli._output import echo, fail, print_fields, print_json, print_table, say, usage_error

if TYPE_CHECKING:
    from runtime.models import FlowRun, LogRecord, OrchestrationResult
    from runtime.states import State

app = typer.Typer(
    help="Flow runs: list, inspect, logs, cancel, resume, set state.", no_args_is_help=True
)


def state_name(name: str) -> str:
    """The canonical state name for ``name`` (any case), or a usage error listing them."""
    from runtime.states import STATE_NAMES

    for known in STATE_NAMES:
        if known.lower() == name.lower():
            return known
    usage_error(f"unknown state {name!r}; one of: {', '.join(STATE_NAMES)}")


def split_state_filters(values: list[str]) -> tuple[list[str], list[str]]:
    """``--state`` values as (state types, state names).

    A value naming a state type in any case (``RUNNING``, ``failed``) filters by type,
    which covers every name of that type; any other (``Late``, ``AwaitingRetry``) by name.
    """
    from runtime.states import StateType

    types: list[str] = []
    names: list[str] = []
    for value in values:
        if value.upper() in StateType.__members__:
            types.append(value.upper())
        else:
            names.append(state_name(value))
    return types, names


def make_state(name: str, message: str | None) -> State:
    """The state ``name`` built by its constructor (``Scheduled`` gets now as its time)."""
    from runtime import states

    constructor = getattr(states, state_name(name))
    state: State = constructor(message=message)
    return state


def state_label(state: State) -> str:
    """``Late (SCHEDULED)``, or just ``Running`` when name and type agree."""
    if state.name.upper() == state.type.value:
        return state.name
    return f"{state.name} ({state.type.value})"


def run_row(run: FlowRun) -> list[Any]:
    return [run.id, run.flow_name, run.name, state_label(run.state), run.created, run.start_time]


def run_fields(run: FlowRun) -> list[tuple[str, Any]]:
    return [
        ("id", run.id),
        ("name", run.name),
        ("flow", run.flow_name),
        ("state", state_label(run.state)),
        ("state message", run.state.message),
        ("state since", run.state.timestamp),
        ("scheduled time", run.state.details.scheduled_time if run.state.is_scheduled() else None),
        ("deployment", run.deployment_id),
        ("work pool", run.work_pool_name),
        ("work queue", run.work_queue_name),
        ("parent flow run", run.parent_flow_run_id),
        ("parameters", run.parameters),
        ("tags", ", ".join(run.tags)),
        ("run count", run.run_count),
        ("created", run.created),
        ("start time", run.start_time),
        ("end time", run.end_time),
        ("total run time", f"{run.total_run_time:.3f}s" if run.total_run_time else None),
    ]


@app.command("ls")
@api_command
def ls(
    flow_name: Annotated[str | None, typer.Option(help="Only runs of this flow.")] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            help="Only runs in this state type (RUNNING) or name (Late); repeatable.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many runs.")] = 50,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """List flow runs, newest first."""
    types, names = split_state_filters(state or [])
    client = connect(api_url)
    runs = paginate(
        lambda cursor: client.list_flow_runs(
            flow_name=flow_name,
            state_types=types or None,
            state_names=names or None,
            limit=min(limit, 1000),
            cursor=cursor,
        ),
        limit,
    )
    if json_output:
        print_json(runs)
        return
    print_table(
        "Flow runs", ["ID", "FLOW", "NAME", "STATE", "CREATED", "STARTED"], map(run_row, runs)
    )


@app.command("inspect")
@api_command
def inspect(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID", help="The flow run's id.")],
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Show one flow run."""
    client = connect(api_url)
    run = client.read_flow_run(flow_run_id)
    if json_output:
        print_json(run)
        return
    print_fields(f"Flow run {run.id}", run_fields(run))
    from sdk.cli.task_run import TASK_RUN_COLUMNS, task_run_row

    task_runs = paginate(
        lambda cursor: client.list_task_runs(flow_run_id=run.id, limit=1000, cursor=cursor)
    )
    task_runs.sort(key=lambda t: (t.start_time or t.created, t.created))
    print_table("Task runs", TASK_RUN_COLUMNS, map(task_run_row, task_runs))


def parse_level(value: str | None) -> int | None:
    """``INFO`` / ``warning`` / ``30`` as a numeric level; a usage error otherwise."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    level = logging.getLevelName(value.upper())
    if not isinstance(level, int):
        usage_error(f"unknown log level {value!r}: DEBUG, INFO, WARNING, ERROR, CRITICAL or 0-100")
    return level


@app.command("logs")
@api_command
def logs(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID", help="The flow run's id.")],
    level: Annotated[
        str | None, typer.Option(help="Only lines at or above this level (INFO, 30, ...).")
    ] = None,
    task_run_id: Annotated[str | None, typer.Option(help="Only this task run's lines.")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many lines (default: all).")
    ] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Print a flow run's log lines in time order."""
    level_ge = parse_level(level)
    client = connect(api_url)
    client.read_flow_run(flow_run_id)  # a clear "not found" rather than an empty listing
    records = paginate(
        lambda cursor: client.read_logs(
            flow_run_id,
            task_run_id=task_run_id,
            level_ge=level_ge,
            limit=min(limit or 1000, 1000),
            cursor=cursor,
        ),
        limit,
    )
    if json_output:
        print_json(records)
        return
    if not records:
        say(f"No logs for flow run {flow_run_id}.")
        return
    names = task_run_names(client, flow_run_id) if any(r.task_run_id for r in records) else {}
    for record in records:
        source = names.get(record.task_run_id, record.task_run_id) if record.task_run_id else None
        echo(log_line(record, source))


def task_run_names(client: Any, flow_run_id: str) -> dict[str, str]:
    """``{task_run_id: "name (id)"}`` for every task run of a flow run."""
    runs = paginate(
        lambda cursor: client.list_task_runs(flow_run_id=flow_run_id, limit=1000, cursor=cursor)
    )
    return {run.id: run.name for run in runs}


def log_line(record: LogRecord, task_run: str | None) -> str:
    """``time | LEVEL | source | logger | message``; source is the task run, or ``flow run``."""
    source = f"task run {task_run}" if task_run else "flow run"
    return (
        f"{log_time(record.timestamp)} | {logging.getLevelName(record.level):<8} | "
        f"{source} | {record.name} | {record.message}"
    )


def log_time(when: datetime) -> str:
    """``2024-05-01T12:00:00.123Z``: log lines need sub-second times."""
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report(run_id: str, result: OrchestrationResult, json_output: bool) -> None:
    """Print an orchestration result; a refusal is an error (exit 1)."""
    if result.status in ("REJECT", "ABORT"):
        reason = f": {result.reason}" if result.reason else ""
        fail(
            f"transition {result.status.lower()}ed{reason} "
            f"(flow run {run_id} stays {state_label(result.state)})"
        )
    if json_output:
        print_json(result)
        return
    if result.status == "WAIT":
        say(
            f"Flow run {run_id}: wait {result.delay_seconds:g}s before proposing it again"
            + (f" ({result.reason})" if result.reason else "")
        )
        return
    say(f"Flow run {run_id} is now {state_label(result.state)}.")


@app.command("cancel")
@api_command
def cancel(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID", help="The flow run's id.")],
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Cancel a flow run: Cancelled if it has not started, Cancelling if it is running."""
    result = connect(api_url).cancel_flow_run(flow_run_id)
    report(flow_run_id, result, json_output)


@app.command("set-state")
@api_command
def set_state(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID", help="The flow run's id.")],
    state: Annotated[
        str, typer.Argument(metavar="STATE_NAME", help="Completed, Failed, Scheduled, Late, ...")
    ],
    message: Annotated[str | None, typer.Option(help="The new state's message.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the orchestration rules (an operator override).")
    ] = False,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Propose a state for a flow run (the orchestration rules decide unless --force)."""
    new_state = make_state(state, message)
    result = connect(api_url).set_flow_run_state(flow_run_id, new_state, force=force)
    report(flow_run_id, result, json_output)


@app.command("resume")
@api_command
def resume(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID", help="The flow run's id.")],
    input_json: Annotated[
        str | None,
        typer.Option("--input", help="The input the paused run waits for, as a JSON object."),
    ] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Resume a paused flow run (a suspended one goes back to its work pool's queue)."""
    import json

    run_input = None
    if input_json is not None:
        try:
            run_input = json.loads(input_json)
        except ValueError as exc:
            usage_error(f"--input is not JSON: {exc}")
        if not isinstance(run_input, dict):
            usage_error("--input must be a JSON object")
    result = connect(api_url).resume_flow_run(flow_run_id, run_input)
    if result.accepted and result.state.type.value == "FAILED":
        fail(f"the pause timed out: flow run {flow_run_id} can no longer resume and is now Failed")
    report(flow_run_id, result, json_output)
