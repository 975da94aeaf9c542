"""``stratoflow deployment``: list and inspect deployments, and run them."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdk.cli._client import ApiUrl, Json, api_command, connect, paginate
from sdk.cli._output import fail, print_fields, print_json, print_table, say, usage_error
from sdk.cli.flow_run import run_fields, state_label

if TYPE_CHECKING:
    from runtime.models import Deployment, DeploymentSchedule
    from sdk.api_client import StratoflowClient

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


def parse_params(pairs: list[str], params_json: str | None) -> dict[str, Any]:
    """``--params '{...}'`` then every ``--param k=v`` over it (v is JSON, else a string)."""
    params: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except ValueError as exc:
            usage_error(f"--params is not valid JSON: {exc}")
        if not isinstance(loaded, dict):
            usage_error("--params must be a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            usage_error(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


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
            help='A parameter; VALUE is JSON (5, true, [1,2], "x") or else a string. Repeatable.',
        ),
    ] = None,
    params: Annotated[
        str | None, typer.Option("--params", help="Parameters as one JSON object.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Wait for the run to finish; exit 1 unless Completed.")
    ] = False,
    watch_interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between polls with --watch.")
    ] = 1.0,
    watch_timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up watching after this many seconds.")
    ] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Create a flow run of a deployment (Scheduled now; a worker of its pool runs it)."""
    parameters = parse_params(param or [], params)
    client = connect(api_url)
    deployment = read_deployment(client, ref)
    flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    if not json_output:
        say(
            f"Created flow run {flow_run.name!r} ({flow_run.id}) of "
            f"{deployment.flow_name}/{deployment.name}: {state_label(flow_run.state)}"
        )
    if not watch:
        if json_output:
            print_json(flow_run)
        return
    deadline = None if watch_timeout is None else time.monotonic() + watch_timeout
    last = flow_run.state.name
    while not flow_run.state.is_final():
        if deadline is not None and time.monotonic() >= deadline:
            fail(
                f"flow run {flow_run.id} still {state_label(flow_run.state)} "
                f"after {watch_timeout:g}s"
            )
        time.sleep(watch_interval)
        flow_run = client.read_flow_run(flow_run.id)
        if flow_run.state.name != last and not json_output:
            say(f"  {state_label(flow_run.state)}")
        last = flow_run.state.name
    if json_output:
        print_json(flow_run)
    else:
        print_fields(f"Flow run {flow_run.id}", run_fields(flow_run)[:6])
    if not flow_run.state.is_completed():
        raise typer.Exit(1)
