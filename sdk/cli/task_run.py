"""``stratoflow task-run``: list and inspect task runs, and read their logs (Prefect's names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdk.cli._client import ApiUrl, Json, api_command, connect, paginate
from sdk.cli._output import echo, print_fields, print_json, print_table, say
from sdk.cli.flow_run import log_line, parse_level, split_state_filters, state_label

if TYPE_CHECKING:
    from runtime.models import TaskRun

app = typer.Typer(help="Task runs: ls, inspect, logs.", no_args_is_help=True)

TaskRunId = Annotated[str, typer.Argument(metavar="ID", help="The task run's id.")]


def task_run_row(run: TaskRun) -> list[Any]:
    """One row of a task-run table."""
    return [run.id, run.name, run.task_key, state_label(run.state), run.start_time, run.end_time]


#: The columns of :func:`task_run_row`.
TASK_RUN_COLUMNS = ["ID", "NAME", "TASK", "STATE", "STARTED", "ENDED"]


def task_run_fields(run: TaskRun) -> list[tuple[str, Any]]:
    return [
        ("id", run.id),
        ("name", run.name),
        ("task key", run.task_key),
        ("flow run", run.flow_run_id),
        ("state", state_label(run.state)),
        ("state message", run.state.message),
        ("state since", run.state.timestamp),
        ("cache key", run.cache_key),
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
    flow_run_id: Annotated[
        str | None, typer.Option(help="Only the task runs of this flow run.")
    ] = None,
    task_key: Annotated[str | None, typer.Option(help="Only runs of this task.")] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(help="Only runs in this state type (FAILED) or name (Cached); repeatable."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many runs.")] = 50,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """List task runs, newest first."""
    types, names = split_state_filters(state or [])
    client = connect(api_url)
    runs = paginate(
        lambda cursor: client.list_task_runs(
            flow_run_id=flow_run_id,
            task_key=task_key,
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
    print_table("Task runs", TASK_RUN_COLUMNS, map(task_run_row, runs))


@app.command("inspect")
@api_command
def inspect(task_run_id: TaskRunId, json_output: Json = False, api_url: ApiUrl = None) -> None:
    """Show one task run."""
    run = connect(api_url).read_task_run(task_run_id)
    if json_output:
        print_json(run)
        return
    print_fields(f"Task run {run.id}", task_run_fields(run))


@app.command("logs")
@api_command
def logs(
    task_run_id: TaskRunId,
    level: Annotated[
        str | None, typer.Option(help="Only lines at or above this level (INFO, 30, ...).")
    ] = None,
    head: Annotated[
        bool, typer.Option("--head", help="Only the first --num-logs lines (default 20).")
    ] = False,
    num_logs: Annotated[
        int | None, typer.Option("--num-logs", "-n", min=1, help="At most this many lines.")
    ] = None,
    reverse: Annotated[bool, typer.Option("--reverse", "-r", help="Newest line first.")] = False,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Print a task run's log lines in time order."""
    level_ge = parse_level(level)
    client = connect(api_url)
    run = client.read_task_run(task_run_id)
    if run.flow_run_id is None:
        say(f"No logs for task run {task_run_id} (it belongs to no flow run).")
        return
    flow_run_id = run.flow_run_id
    limit = num_logs or (20 if head else None)
    records = paginate(
        lambda cursor: client.read_logs(
            flow_run_id,
            task_run_id=task_run_id,
            level_ge=level_ge,
            limit=1000,
            cursor=cursor,
        ),
        None if reverse else limit,
    )
    if reverse:
        records = records[::-1][:limit] if limit else records[::-1]
    if json_output:
        print_json(records)
        return
    if not records:
        say(f"No logs for task run {task_run_id}.")
        return
    for record in records:
        echo(log_line(record, run.name))
