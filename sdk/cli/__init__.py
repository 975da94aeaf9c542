"""The ``stratoflow`` command line (Typer): one module per command group.

``main()`` is the console script (``stratoflow = "sdk.cli:main"``); ``app`` is
the Typer application, also run by ``python -m sdk.cli``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sdk.cli import (
    api,
    concurrency_limit,
    deploy,
    deployment,
    dev,
    flow,
    flow_run,
    global_concurrency_limit,
    task_run,
    work_pool,
    worker,
)

app = typer.Typer(
    name="stratoflow",
    help="Stratoflow: a Prefect-style orchestrator built from AWS primitives.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from sdk import __version__

        typer.echo(f"stratoflow {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Stratoflow: a Prefect-style orchestrator built from AWS primitives."""


app.add_typer(flow.app, name="flow")
app.add_typer(flow_run.app, name="flow-run")
app.add_typer(task_run.app, name="task-run")
app.add_typer(deployment.app, name="deployment")
app.add_typer(work_pool.app, name="work-pool")
app.add_typer(worker.app, name="worker")
app.add_typer(concurrency_limit.app, name="concurrency-limit")
app.add_typer(global_concurrency_limit.app, name="global-concurrency-limit")
app.add_typer(global_concurrency_limit.app, name="gcl", hidden=True)
app.add_typer(api.app, name="api")
app.command("dev")(dev.dev)
app.command("deploy")(deploy.deploy)


def main() -> None:
    """Entry point of the ``stratoflow`` console script."""
    app(prog_name="stratoflow")


__all__ = ["app", "main"]
