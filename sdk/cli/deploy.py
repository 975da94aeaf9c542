"""``stratoflow deploy``: deploy one flow, or the deployments of ``stratoflow.yaml``.

``stratoflow deploy path/to/file.py:flow_func --name NAME --pool POOL [--param k=v]``
deploys one flow (its file's directory is the code bundled); ``stratoflow deploy --all``
or ``--name NAME`` (repeatable) deploys entries of the project file (``--file``,
default ``./stratoflow.yaml``; Prefect's ``prefect deploy --all`` / ``--name``).

It writes where ``get_client()`` does: the API when ``STRATOFLOW_API_URL`` (or
``--api-url``) is set, else the stores of ``AWS_ENDPOINT_URL``/``STRATOFLOW_PREFIX``.
The embedded default is refused: a deployment there would vanish when the command exits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sdk.cli._client import ApiUrl, api_command
from sdk.cli._output import fail, say, usage_error
from sdk.cli.deployment import parse_params

if TYPE_CHECKING:
    import uuid


def _entrypoint_source(entrypoint: str) -> tuple[Path, str]:
    """``(directory to bundle, entrypoint relative to it)`` for a command-line entrypoint."""
    target, sep, attr = entrypoint.rpartition(":")
    if not sep or not target or not attr:
        usage_error(
            f"ENTRYPOINT must be path/to/file.py:flow_function or package.module:flow_function, "
            f"not {entrypoint!r}"
        )
    if target.endswith(".py"):
        file = Path(target).expanduser().resolve()
        if not file.is_file():
            usage_error(f"{target}: no such file")
        return file.parent, f"{file.name}:{attr}"
    return Path.cwd(), entrypoint


def _use_backend(api_url: str | None) -> None:
    from runtime.settings import get_settings

    if api_url:
        os.environ["STRATOFLOW_API_URL"] = api_url
        get_settings.cache_clear()
    if get_settings().backend() == "embedded":
        usage_error(
            "no installation to deploy to: set STRATOFLOW_API_URL (`stratoflow dev` prints "
            "it), or AWS_ENDPOINT_URL / STRATOFLOW_PREFIX for direct AWS access"
        )


def _describe(deployment_id: uuid.UUID) -> str:
    """Where the deployment's code is, read back through the same backend."""
    from sdk.client import ApiSyncClient, get_client

    with get_client(sync_client=True) as client:
        if isinstance(client, ApiSyncClient):
            deployment = client.api.read_deployment(str(deployment_id))
        else:
            deployment = client.stores.registry.read_deployment(str(deployment_id))
    if deployment.code_bundle is not None:
        code = f"bundle {deployment.code_bundle.uri} ({deployment.code_bundle.size} bytes)"
    elif deployment.path is not None:
        code = f"path {deployment.path}"
    elif "image" in deployment.job_variables:
        code = f"image {deployment.job_variables['image']}"
    else:
        code = "the worker's working directory"
    return (
        f"Deployed '{deployment.flow_name}/{deployment.name}' ({deployment.id}) to work pool "
        f"{deployment.work_pool_name!r}; entrypoint {deployment.entrypoint}, code: {code}"
    )


@api_command
def deploy(
    entrypoint: Annotated[
        str | None,
        typer.Argument(
            metavar="ENTRYPOINT",
            help="path/to/file.py:flow_function (omit to deploy from stratoflow.yaml)",
        ),
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name", "-n", help="The deployment's name (with stratoflow.yaml: which to deploy)."
        ),
    ] = None,
    deploy_all: Annotated[
        bool, typer.Option("--all", help="Deploy every deployment of stratoflow.yaml.")
    ] = False,
    project_file: Annotated[
        Path, typer.Option("--file", help="The project file (with --all / --name).")
    ] = Path("stratoflow.yaml"),
    pool: Annotated[
        str | None, typer.Option("--pool", "-p", help="The work pool (ENTRYPOINT form).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="KEY=VALUE",
            help="A default parameter; VALUE is JSON or else a string. Repeatable.",
        ),
    ] = None,
    params: Annotated[
        str | None, typer.Option("--params", help="Default parameters as one JSON object.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Repeatable.")] = None,
    version: Annotated[str | None, typer.Option("--version", "-v")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    concurrency_limit: Annotated[int | None, typer.Option("--concurrency-limit", min=0)] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="The code is in this worker image: no bundle.")
    ] = None,
    push: Annotated[
        bool,
        typer.Option(
            "--push/--no-push",
            help="--no-push: the code is already at this directory where the worker runs.",
        ),
    ] = True,
    api_url: ApiUrl = None,
) -> None:
    """Deploy a flow to a work pool (or the deployments of stratoflow.yaml)."""
    from runtime.errors import StratoflowError

    one_off = [param, params, tag, version, description, concurrency_limit, image, pool]
    if entrypoint is None:
        if any(option not in (None, []) for option in one_off) or not push:
            usage_error(
                "--pool, --param(s), --tag, --version, --description, --concurrency-limit, "
                "--image and --no-push go with an ENTRYPOINT; stratoflow.yaml sets them there"
            )
        if not deploy_all and not name:
            usage_error("give an ENTRYPOINT, or --all / --name NAME to deploy from stratoflow.yaml")
        if deploy_all and name:
            usage_error("give --all or --name, not both")
    else:
        if deploy_all:
            usage_error("--all deploys stratoflow.yaml; it takes no ENTRYPOINT")
        if not name or len(name) != 1:
            usage_error("give the deployment one --name")
        if not pool:
            usage_error("give the work pool: --pool NAME")
    parameters = parse_params(param or [], params)
    _use_backend(api_url)
    from sdk.deployments.deploy import deploy_project, flow_from_source

    try:
        if entrypoint is None:
            from runtime.project_file import load_project_file

            project = load_project_file(project_file)
            done = deploy_project(project, None if deploy_all else name, print_next_steps=False)
            ids = [deployment_id for _, deployment_id in done]
        else:
            assert name is not None
            directory, relative = _entrypoint_source(entrypoint)
            flow = flow_from_source(directory, relative)
            ids = [
                flow.deploy(
                    name[0],
                    work_pool_name=pool,
                    parameters=parameters,
                    tags=tag or [],
                    version=version,
                    description=description,
                    concurrency_limit=concurrency_limit,
                    image=image,
                    push=push,
                    print_next_steps=False,
                )
            ]
    except StratoflowError as exc:
        fail(exc.message)
    for deployment_id in ids:
        say(_describe(deployment_id))
