"""``stratoflow worker``: start a worker on a work pool, list the workers polling.

Workers talk to the stores directly (DynamoDB, SQS, S3 at the AWS endpoint of
the environment: ``AWS_ENDPOINT_URL`` locally, the task role in AWS), as the
flow runs they execute do; so does ``worker ls``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from sdk.cli._output import fail, fmt, print_json, print_table, say

if TYPE_CHECKING:
    from runtime.stores import Stores
    from runtime.stores.workers import WorkerInfo

app = typer.Typer(help="Workers: start, ls.", no_args_is_help=True)


def _stores() -> Stores:
    """The stores at the environment's AWS endpoint (even when an API URL is set too)."""
    from runtime.settings import get_settings
    from runtime.stores import Stores

    settings = get_settings()
    if not (os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("STRATOFLOW_PREFIX")):
        fail(
            "workers talk to DynamoDB and SQS directly: set AWS_ENDPOINT_URL (the endpoint "
            "`stratoflow dev` prints) or STRATOFLOW_PREFIX (a deployed stack)"
        )
    return Stores.connect(
        settings.prefix,
        results_bucket=settings.results_bucket,
        inline_result_max_bytes=settings.inline_result_max_bytes,
    )


@app.command("start")
def start(
    pool: Annotated[str, typer.Option("--pool", "-p", help="The work pool to poll.")],
    limit: Annotated[
        int | None, typer.Option(min=1, help="Most flow runs this worker executes at once.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="The worker's name (default: host-pid).")
    ] = None,
    prefetch: Annotated[
        int,
        typer.Option(
            min=0, max=10, help="Messages taken beyond free slots, waiting here for a slot."
        ),
    ] = 0,
) -> None:
    """Poll the work pool's queue and execute its flow runs until SIGTERM or Ctrl-C."""
    from runtime.errors import NotFound
    from runtime.worker.worker import Worker, WorkerOptions

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(message)s"))
    worker_logger = logging.getLogger("stratoflow.worker")
    worker_logger.addHandler(handler)
    worker_logger.setLevel(logging.INFO)
    options = WorkerOptions(pool=pool, name=name, limit=limit, prefetch=prefetch)
    try:
        code = Worker(_stores(), options).run()
    except NotFound as exc:
        fail(f"{exc.message}: create it with `stratoflow work-pool create {pool}`")
    raise typer.Exit(code)


def worker_rows(workers: list[WorkerInfo]) -> list[list[str]]:
    """One table row per worker (``worker ls`` and ``work-pool inspect``)."""
    return [
        [
            w.name,
            w.work_pool_name,
            w.host,
            str(w.pid),
            w.version,
            fmt(w.last_poll),
            ", ".join(w.running) or "-",
        ]
        for w in workers
    ]


WORKER_COLUMNS = ("name", "pool", "host", "pid", "version", "last poll", "running")


def pool_workers(pool: str) -> list[WorkerInfo]:
    """The live workers of ``pool`` (for ``stratoflow work-pool inspect``)."""
    from runtime.stores.workers import WorkerStore

    stores = _stores()
    return WorkerStore(stores.db, stores.specs.registry).list(pool)


def print_pool_workers(pool: str) -> None:
    """The "Workers" section of ``stratoflow work-pool inspect``: who polls ``pool``, running what.

    Read from the stores (as ``worker ls``); without an AWS endpoint configured it
    says so instead of failing the whole command.
    """
    if not (os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("STRATOFLOW_PREFIX")):
        say("Workers: unknown here (set AWS_ENDPOINT_URL, as `stratoflow dev` prints)")
        return
    print_table(f"Workers polling {pool}", WORKER_COLUMNS, worker_rows(pool_workers(pool)))


@app.command("ls")
def ls(
    pool: Annotated[str | None, typer.Option("--pool", "-p", help="Only this pool's.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print plain JSON.")] = False,
) -> None:
    """List the workers polling (not heard from for a while: not listed)."""
    from runtime.stores.workers import WorkerStore

    stores = _stores()
    workers = WorkerStore(stores.db, stores.specs.registry).list(pool)
    if json_output:
        print_json([w.model_dump(mode="json") for w in workers])
        return
    print_table("Workers", WORKER_COLUMNS, worker_rows(workers))
