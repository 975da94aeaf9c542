"""Serving flows from this process: ``flow.serve``, ``flow.to_deployment``, ``serve(*deployments)``.

Prefect's simplest remote path (docs/v3/how-to-guides/deployment_infra/
run-flows-in-local-processes.mdx):
the deployments are registered, and this process polls for their runs and
executes each in a child process until Ctrl-C or SIGTERM. Here the served
deployments go to a work pool of their own (``serve-<hash of their names>``,
created with its queue when missing), and this process runs a worker on it; so
a run of a served deployment is executed only where its code is, and another
process serving the same deployments shares the work.

Schedules (``cron=``, ``interval=``, ``schedules=`` ...) arrive with the
scheduler (phase 6): passing one is refused with an error saying so.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.models import DeploymentCreate
from runtime.services.work_pools import ensure_work_pool

if TYPE_CHECKING:
    from runtime.engine.flows import Flow
    from runtime.models import Deployment
    from runtime.stores import Stores

SCHEDULE_OPTIONS = ("cron", "interval", "rrule", "schedule", "schedules")
"""Prefect's schedule keywords of ``serve``/``to_deployment``: not before phase 6."""


class SchedulesNotYetSupported(ValueError):
    """A schedule was given to ``serve``/``to_deployment``: schedules come in phase 6."""


def _refuse_schedules(options: dict[str, Any]) -> None:
    given = [name for name in SCHEDULE_OPTIONS if options.get(name) not in (None, [], ())]
    if given:
        raise SchedulesNotYetSupported(
            f"{', '.join(given)}: schedules are not supported yet (they arrive with the "
            "scheduler, phase 6); serve without one and trigger runs with "
            "`stratoflow deployment run FLOW/NAME` or run_deployment()"
        )


def flow_entrypoint(flow: Flow[..., Any]) -> str:
    """``/absolute/path/file.py:name``: where a worker on this machine finds ``flow``.

    ``name`` is the module attribute holding the flow (its function's name otherwise).
    """
    source = inspect.getsourcefile(flow.fn)
    if source is None:
        raise ValueError(f"flow {flow.name!r} has no source file: it cannot be served")
    module = sys.modules.get(flow.fn.__module__)
    attribute = next(
        (k for k, v in vars(module).items() if v is flow) if module is not None else iter(()),
        flow.fn.__name__,
    )
    return f"{Path(source).resolve()}:{attribute}"


@dataclass
class RunnerDeployment:
    """A deployment of a flow to be served from this process (Prefect's ``RunnerDeployment``)."""

    flow: Flow[..., Any]
    name: str
    entrypoint: str
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    version: str | None = None
    concurrency_limit: int | None = None
    enforce_parameter_schema: bool = True
    job_variables: dict[str, Any] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        """``flow-name/deployment-name``, what ``stratoflow deployment run`` takes."""
        return f"{self.flow.name}/{self.name}"

    def request(self, work_pool_name: str) -> DeploymentCreate:
        """The deployment's registration on ``work_pool_name`` (validated: a clear error)."""
        return DeploymentCreate(
            name=self.name,
            flow_name=self.flow.name,
            entrypoint=self.entrypoint,
            description=self.description,
            version=self.version,
            tags=self.tags,
            parameters=self.parameters,
            parameter_openapi_schema=self.flow.parameters.model_dump_for_openapi(),
            enforce_parameter_schema=self.enforce_parameter_schema,
            work_pool_name=work_pool_name,
            job_variables=self.job_variables,
            concurrency_limit=self.concurrency_limit,
            empirical_policy=self.flow.retry_policy(),
        )


def to_deployment(
    flow: Flow[..., Any],
    name: str,
    *,
    parameters: dict[str, Any] | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    version: str | None = None,
    concurrency_limit: int | None = None,
    enforce_parameter_schema: bool = True,
    job_variables: dict[str, Any] | None = None,
    **schedule_options: Any,
) -> RunnerDeployment:
    """A deployment of ``flow`` to serve with :func:`serve` (Prefect's ``flow.to_deployment``).

    Nothing is registered until it is served. Schedules are refused (phase 6);
    any other unknown keyword is a TypeError naming it.
    """
    unknown = sorted(set(schedule_options) - set(SCHEDULE_OPTIONS))
    if unknown:
        raise TypeError(f"to_deployment() got unexpected keyword arguments: {', '.join(unknown)}")
    _refuse_schedules(schedule_options)
    deployment = RunnerDeployment(
        flow=flow,
        name=name,
        entrypoint=flow_entrypoint(flow),
        parameters=dict(parameters or {}),
        description=description if description is not None else flow.description,
        tags=list(tags or []),
        version=version,
        concurrency_limit=concurrency_limit,
        enforce_parameter_schema=enforce_parameter_schema,
        job_variables=dict(job_variables or {}),
    )
    deployment.request("serve")  # a bad name or parameter fails here, not when served
    return deployment


def serve_pool_name(deployments: tuple[RunnerDeployment, ...]) -> str:
    """The work pool of a set of served deployments: ``serve-`` + a hash of their names."""
    names = "\n".join(sorted(d.full_name for d in deployments))
    return f"serve-{hashlib.sha256(names.encode()).hexdigest()[:16]}"


def register(
    stores: Stores, deployments: tuple[RunnerDeployment, ...]
) -> tuple[str, list[Deployment]]:
    """Create the served pool (with its queue) if missing and upsert the deployments on it."""
    pool = serve_pool_name(deployments)
    ensure_work_pool(stores, pool)
    registered = [stores.registry.upsert_deployment(d.request(pool))[0] for d in deployments]
    return pool, registered


def serve(
    *deployments: RunnerDeployment,
    limit: int | None = None,
    stores: Stores | None = None,
    print_starting_message: bool = True,
) -> None:
    """Register the deployments and execute their runs here until Ctrl-C or SIGTERM.

    ``limit``: most runs executing at once. Runs are submitted from anywhere
    (``run_deployment``, ``stratoflow deployment run``, the API).
    """
    if not deployments:
        raise ValueError("serve() needs at least one deployment (flow.to_deployment(...))")
    from runtime.worker.worker import Worker, WorkerOptions

    if stores is None:
        from runtime.engine.backend import connect_stores

        stores = connect_stores()
    pool, _ = register(stores, deployments)
    if print_starting_message:
        names = ", ".join(f"{d.full_name!r}" for d in deployments)
        print(
            f"Your deployments {names} are being served on work pool {pool!r}.\n"
            "To trigger a run, use the following command:\n"
            f"        $ stratoflow deployment run '{deployments[0].full_name}'",
            flush=True,
        )
    Worker(stores, WorkerOptions(pool=pool, limit=limit)).run()


def serve_flow(
    flow: Flow[..., Any],
    name: str | None = None,
    *,
    limit: int | None = None,
    print_starting_message: bool = True,
    **options: Any,
) -> None:
    """``flow.serve(...)``: serve one deployment of ``flow`` (named after it by default)."""
    deployment = to_deployment(flow, name or flow.name, **options)
    serve(deployment, limit=limit, print_starting_message=print_starting_message)
