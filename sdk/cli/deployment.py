"""``stratoflow deployment``: list and inspect deployments, and run them."""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdk.cli._client import ApiUrl, Json, api_command, connect, paginate
from sdk.cli._output import (
    EXIT_ERROR,
    echo,
    fail,
    print_fields,
    print_json,
    print_table,
    say,
    usage_error,
    warn,
)
from sdk.cli.flow_run import run_fields, state_label

if TYPE_CHECKING:
    from runtime.models import Deployment, DeploymentSchedule, FlowRun
    from runtime.states import State
    from sdk.http_client import StratoflowClient

app = typer.Typer(help="Deployments: ls, inspect, run.", no_args_is_help=True)

DeploymentRef = Annotated[
    str,
    typer.Argument(
        metavar="ID_OR_FLOW/NAME", help="The deployment's id, or FLOW_NAME/DEPLOYMENT_NAME."
    ),
]


def read_deployment(client: StratoflowClient, ref: str) -> Deployment:
    """The deployment named ``flow/name``, or with id ``ref``."""
    if "/" in ref:
        flow_name, _, name = ref.partition("/")
        if not flow_name or not name:
            usage_error(f"expected FLOW_NAME/DEPLOYMENT_NAME, got {ref!r}")
        return client.read_deployment_by_name(flow_name, name)
    return client.read_deployment(ref)


def describe_schedule(schedule: DeploymentSchedule) -> str:
    spec = schedule.schedule
    cron = getattr(spec, "cron", None)
    text = f"cron {cron!r}" if cron is not None else f"every {getattr(spec, 'interval', '?')}s"
    timezone = getattr(spec, "timezone", "UTC")
    if timezone != "UTC":
        text += f" ({timezone})"
    return text if schedule.active else f"{text} [inactive]"


def deployment_fields(deployment: Deployment) -> list[tuple[str, Any]]:
    return [
        ("id", deployment.id),
        ("name", f"{deployment.flow_name}/{deployment.name}"),
        ("description", deployment.description),
        ("version", deployment.version),
        ("entrypoint", deployment.entrypoint),
        ("work pool", deployment.work_pool_name),
        ("work queue", deployment.work_queue_name),
        ("parameters", deployment.parameters),
        ("enforce parameter schema", deployment.enforce_parameter_schema),
        ("job variables", deployment.job_variables),
        ("schedules", "; ".join(describe_schedule(s) for s in deployment.schedules)),
        ("concurrency limit", deployment.concurrency_limit),
        ("tags", ", ".join(deployment.tags)),
        ("paused", deployment.paused),
        ("created", deployment.created),
        ("updated", deployment.updated),
    ]


#: A ``--param`` value starting with one of these is JSON, and must parse as JSON.
JSON_STARTS = ("[", "{", '"')


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def _check_finite(value: Any) -> None:
    """Raise ValueError for a float that is not finite (``1e999`` parses as infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item)
    elif isinstance(value, list):
        for item in value:
            _check_finite(item)


def load_json(text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no overflowing numbers, bounded nesting (ValueError)."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    _check_finite(value)
    return value


def parse_value(key: str, raw: str) -> Any:
    """One ``--param`` value.

    A value starting with ``[``, ``{`` or ``"`` is JSON and must parse (else a usage
    error naming the parameter); any other value is JSON when it parses (``5``,
    ``true``, ``null``, ``1.5``), else the string itself (``hello``).
    """
    text = raw.strip()
    if text.startswith(JSON_STARTS):
        try:
            return load_json(text)
        except ValueError as exc:
            usage_error(
                f"--param {key}: a value starting with {text[0]} must be valid JSON ({exc}); "
                f"quote a plain string for the shell: --param '{key}=\"...\"'"
            )
    try:
        return load_json(text)
    except ValueError as exc:
        if "finite" in str(exc):
            usage_error(f"--param {key}: {exc} (give a finite number or a quoted JSON string)")
        return raw


def parse_params(pairs: list[str], params_json: str | None) -> dict[str, Any]:
    """``--params '{...}'`` then every ``--param k=v`` over it (see :func:`parse_value`)."""
    params: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = load_json(params_json)
        except ValueError as exc:
            usage_error(f"--params is not valid JSON: {exc}")
        if not isinstance(loaded, dict):
            usage_error("--params must be a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            usage_error(f"--param expects KEY=VALUE, got {pair!r}")
        params[key] = parse_value(key, raw)
    return params


#: A worker that polled its pool within this many seconds counts as present.
WORKER_SEEN_SECONDS = 60.0


def worker_warning(client: StratoflowClient, deployment: Deployment) -> str | None:
    """Why nothing may pick up a run of ``deployment`` right now (None when a worker polls).

    A worker is present when the worker registry (``GET /work_pools/{name}/status``,
    its ``workers``) holds one that polled the pool within the last
    :data:`WORKER_SEEN_SECONDS`. Until one does, the run waits in the pool's queue
    (Pending; a run scheduled later stays Scheduled until it is due).
    """
    from datetime import UTC, datetime

    from sdk.api_errors import NotFound

    pool_name = deployment.work_pool_name
    if not pool_name:
        return (
            f"deployment {deployment.flow_name}/{deployment.name} has no work pool: "
            "no worker will pick its runs up"
        )
    try:
        pool = client.read_work_pool_status(pool_name)
    except NotFound:
        return f"work pool {pool_name!r} does not exist: no worker can pick this run up"
    if pool.paused:
        return f"work pool {pool_name!r} is paused: its workers take no new runs"
    polls = [
        datetime.fromisoformat(str(w["last_poll"])) for w in pool.workers if w.get("last_poll")
    ]
    polls = [p if p.tzinfo else p.replace(tzinfo=UTC) for p in polls]
    if not polls:
        return (
            f"no worker has been seen polling work pool {pool_name!r}: the run waits in "
            f"its queue until a worker polls it (stratoflow worker start --pool {pool_name})"
        )
    age = (datetime.now(UTC) - max(polls)).total_seconds()
    if age > WORKER_SEEN_SECONDS:
        return (
            f"no worker has polled work pool {pool_name!r} in the last "
            f"{WORKER_SEEN_SECONDS:g} s (last poll {age:.0f} s ago): the run waits in its "
            "queue until one does"
        )
    return None


class LogFollower:
    """Prints a flow run's log lines once each, in time order, as they arrive.

    Every poll reads the run's lines from the start and prints those not printed yet
    (lines are shipped in batches, so a late batch may hold earlier times). Lines are
    escaped like every other stored text (:func:`sdk.cli._output.echo`).
    """

    def __init__(self, client: StratoflowClient, flow_run_id: str) -> None:
        self.client = client
        self.flow_run_id = flow_run_id
        self.seen: set[tuple[str, str | None, str]] = set()

    def poll(self) -> int:
        """Print the lines not printed yet; how many."""
        from sdk.cli.flow_run import log_line

        records = paginate(
            lambda cursor: self.client.read_logs(self.flow_run_id, limit=1000, cursor=cursor)
        )
        printed = 0
        for record in records:
            key = (record.timestamp.isoformat(), record.id, record.message)
            if key in self.seen:
                continue
            self.seen.add(key)
            echo(log_line(record, record.task_run_id))
            printed += 1
        return printed


def watch_run(
    client: StratoflowClient,
    flow_run: FlowRun,
    interval: float,
    timeout: float | None,
    *,
    quiet: bool = False,
) -> FlowRun:
    """Poll ``flow_run`` until it is final; print each new state and log line (unless ``quiet``).

    Polls back off from 0.1 s to ``interval``. After ``timeout`` seconds: an error
    naming the run's state (exit 1); the run itself goes on.
    """
    from runtime.backoff import Backoff

    backoff = Backoff(base=min(0.1, interval), cap=interval, jitter=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    follower = None if quiet else LogFollower(client, flow_run.id)
    seen_version = flow_run.state_version
    attempt = 0
    while not flow_run.state.is_final():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            fail(f"flow run {flow_run.id} still {state_label(flow_run.state)} after {timeout:g}s")
        backoff.sleep(attempt, limit=left)
        attempt += 1
        flow_run = client.read_flow_run(flow_run.id)
        if follower is not None:
            follower.poll()
        if flow_run.state_version != seen_version and not quiet:
            for state in new_states(client, flow_run, seen_version):
                say(f"  {state_change(state)}")
        seen_version = flow_run.state_version
    if follower is not None:
        follower.poll()  # the last lines are shipped when the run ends
    return flow_run


def new_states(client: StratoflowClient, flow_run: FlowRun, seen_version: int) -> list[State]:
    """The states ``flow_run`` went through since ``seen_version`` (each one, not just the last).

    One more state: the run's own. More: the tail of its history (a fast run may pass
    several states between two polls).
    """
    missed = flow_run.state_version - seen_version
    if missed <= 1:
        return [flow_run.state]
    history = client.read_flow_run_states(flow_run.id)
    return history[-missed:] if len(history) >= missed else history


def state_change(state: State) -> str:
    """``Crashed (CRASHED): message``, the line --watch prints for a new state."""
    label = state_label(state)
    return f"{label}: {state.message}" if state.message else label


@app.command("ls")
@api_command
def ls(
    flow_name: Annotated[str | None, typer.Option(help="Only this flow's deployments.")] = None,
    work_pool: Annotated[str | None, typer.Option(help="Only deployments on this pool.")] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """List deployments."""
    client = connect(api_url)
    deployments = paginate(
        lambda cursor: client.list_deployments(
            flow_name=flow_name, work_pool_name=work_pool, cursor=cursor
        )
    )
    if json_output:
        print_json(deployments)
        return
    print_table(
        "Deployments",
        ["ID", "NAME", "WORK POOL", "SCHEDULES", "PAUSED", "UPDATED"],
        (
            [
                d.id,
                f"{d.flow_name}/{d.name}",
                d.work_pool_name,
                "; ".join(describe_schedule(s) for s in d.schedules),
                d.paused,
                d.updated,
            ]
            for d in deployments
        ),
    )


@app.command("inspect")
@api_command
def inspect(ref: DeploymentRef, json_output: Json = False, api_url: ApiUrl = None) -> None:
    """Show one deployment."""
    deployment = read_deployment(connect(api_url), ref)
    if json_output:
        print_json(deployment)
        return
    print_fields(
        f"Deployment {deployment.flow_name}/{deployment.name}", deployment_fields(deployment)
    )


@app.command("run")
@api_command
def run(
    ref: DeploymentRef,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help=(
                'A parameter; VALUE is JSON (5, true, [1,2], "x") or else a string; '
                'a VALUE starting with [ { or " must be valid JSON. Repeatable.'
            ),
        ),
    ] = None,
    params: Annotated[
        str | None, typer.Option("--params", help="Parameters as one JSON object.")
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Stream the run's states and log lines until it ends; exit 1 unless Completed.",
        ),
    ] = False,
    watch_interval: Annotated[
        float, typer.Option(min=0.05, help="Longest wait between two polls with --watch.")
    ] = 1.0,
    watch_timeout: Annotated[
        float | None,
        typer.Option(
            "--watch-timeout",
            "--timeout",
            min=0,
            help="Give up watching after this many seconds (exit 1; the run goes on).",
        ),
    ] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Create a flow run of a deployment and queue it on its pool (a worker of the pool runs it)."""
    parameters = parse_params(param or [], params)
    client = connect(api_url)
    deployment = read_deployment(client, ref)
    flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    problem = worker_warning(client, deployment)
    if problem is not None:
        warn(problem + (" (watching anyway; Ctrl-C stops watching)" if watch else ""))
    if not json_output:
        say(
            f"Created flow run {flow_run.name!r} ({flow_run.id}) of "
            f"{deployment.flow_name}/{deployment.name}: {state_label(flow_run.state)}"
        )
    if not watch:
        if json_output:
            print_json(flow_run)
        return
    flow_run = watch_run(client, flow_run, watch_interval, watch_timeout, quiet=json_output)
    if json_output:
        print_json(flow_run)
    else:
        print_fields(f"Flow run {flow_run.id}", run_fields(flow_run)[:6])
    if not flow_run.state.is_completed():
        raise typer.Exit(EXIT_ERROR)
