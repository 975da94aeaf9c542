"""Deployment use cases: upsert one (recording its flow), update one, run one.

Called by the ``/deployments`` routes and the SDK's ``run_deployment``; the
scheduler runs deployments through :func:`run_deployment` too. Running one
creates the flow run and sends it to its work pool's queue
(:mod:`runtime.services.dispatch`).
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

from runtime.errors import Conflict, InvalidInput, NotFound
from runtime.limits import RUN_FIELDS_MAX_BYTES
from runtime.models import (
    Deployment,
    DeploymentCreate,
    DeploymentFlowRunCreate,
    DeploymentUpdate,
    FlowRun,
    FlowRunCreate,
    RetryPolicy,
)
from runtime.services.dispatch import enqueue_flow_run
from runtime.services.references import must_exist
from runtime.states import Scheduled, utcnow
from runtime.stores.runs import request_fingerprint

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "check_runnable",
    "flow_run_request",
    "run_deployment",
    "run_deployment_once",
    "update_deployment",
    "upsert_deployment",
    "validate_parameters",
]


def upsert_deployment(stores: Stores, request: DeploymentCreate) -> tuple[Deployment, bool]:
    """Create the deployment ``flow_name``/``name`` or replace it: ``(deployment, created)``.

    Its work pool, when named, must exist (InvalidInput naming ``work_pool_name``).
    The flow is recorded after the write, so a refused upsert records nothing.
    """
    must_exist("work_pool_name", request.work_pool_name, stores.registry.read_work_pool)
    deployment, created = stores.registry.upsert_deployment(request)
    stores.registry.ensure_flow(request.flow_name)
    return deployment, created


def update_deployment(stores: Stores, deployment_id: str, update: DeploymentUpdate) -> Deployment:
    """Change the fields given; a work pool it names must exist (InvalidInput otherwise)."""
    must_exist("work_pool_name", update.work_pool_name, stores.registry.read_work_pool)
    return stores.registry.update_deployment(deployment_id, update)


def validate_parameters(parameters: dict[str, Any], schema: dict[str, Any]) -> None:
    """Check ``parameters`` against a deployment's JSON Schema; InvalidInput names each bad one.

    The message reads ``parameters.count: 'x' is not of type 'integer'`` (one part
    per error, ``; ``-separated); ``details.errors`` lists them with their ``loc``.
    """
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    try:
        cls = validator_for(schema)
        cls.check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput(
            f"the deployment's parameter_openapi_schema is not a valid JSON Schema: {exc.message}",
            field="parameter_openapi_schema",
        ) from None
    errors: list[dict[str, Any]] = []
    for error in sorted(cls(schema).iter_errors(parameters), key=lambda e: list(e.absolute_path)):
        path = [str(p) for p in error.absolute_path]
        locs = [path]
        if not path and error.validator == "required" and isinstance(error.instance, dict):
            locs = [[str(n)] for n in error.validator_value if n not in error.instance] or locs
        elif not path and error.validator == "additionalProperties":
            allowed = set(schema.get("properties", {}))
            locs = [[n] for n in sorted(parameters) if n not in allowed] or locs
        for loc in locs:
            errors.append(
                {"loc": ["parameters", *loc], "msg": error.message, "type": str(error.validator)}
            )
    if errors:
        message = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        bad = list(dict.fromkeys(e["loc"][1] for e in errors if len(e["loc"]) > 1))
        raise InvalidInput(message, field=".".join(errors[0]["loc"]), parameters=bad, errors=errors)


def flow_run_request(
    deployment: Deployment,
    request: DeploymentFlowRunCreate,
    *,
    idempotency_key: str | None = None,
) -> FlowRunCreate:
    """The flow run a deployment-run request asks for (pure: nothing is read or written).

    Parameters are the deployment's with the request's merged over them, checked
    against ``parameter_openapi_schema`` when ``enforce_parameter_schema``
    (InvalidInput naming each bad parameter). Tags are the deployment's then the
    request's; job variables likewise merged. The run starts Scheduled at
    ``scheduled_time`` (default now; a naive time is UTC). The idempotency key is
    the request's, else ``idempotency_key``.
    """
    parameters = {**deployment.parameters, **request.parameters}
    if deployment.enforce_parameter_schema and deployment.parameter_openapi_schema:
        validate_parameters(parameters, deployment.parameter_openapi_schema)
    scheduled_time = request.scheduled_time or utcnow()
    if scheduled_time.tzinfo is None:  # a naive time is UTC, as everywhere in the API
        scheduled_time = scheduled_time.replace(tzinfo=UTC)
    create = FlowRunCreate(
        flow_name=deployment.flow_name,
        name=request.name,
        parameters=parameters,
        deployment_id=deployment.id,
        work_pool_name=deployment.work_pool_name,
        work_queue_name=request.work_queue_name or deployment.work_queue_name,
        tags=list(dict.fromkeys([*deployment.tags, *request.tags])),
        state=Scheduled(scheduled_time=scheduled_time),
        idempotency_key=request.idempotency_key or idempotency_key,
        job_variables={**deployment.job_variables, **request.job_variables},
        parent_flow_run_id=request.parent_flow_run_id,
        empirical_policy=deployment.empirical_policy or RetryPolicy(),
    )
    size = len(create.model_dump_json().encode())
    if size > RUN_FIELDS_MAX_BYTES:
        msg = (
            f"the run would be {size} bytes of JSON, more than the {RUN_FIELDS_MAX_BYTES} "
            "a run item can hold"
        )
        raise InvalidInput(
            f"body.parameters: {msg}",
            field="parameters",
            errors=[{"loc": ["body", "parameters"], "msg": msg, "type": "value_error"}],
        )
    return create


def run_deployment_once(
    stores: Stores,
    deployment: Deployment | str,
    request: DeploymentFlowRunCreate | None = None,
    *,
    idempotency_key: str | None = None,
) -> tuple[FlowRun, bool]:
    """Create a flow run of a deployment and send it to its pool's queue: ``(run, created)``.

    ``deployment`` is the deployment or its id (NotFound if there is none). See
    :func:`flow_run_request` for what the run gets. Everything is checked before
    anything is written: the parameters (InvalidInput naming each), then the work
    pool (:func:`check_runnable`). The run is created SCHEDULED and handed to
    :func:`runtime.services.dispatch.enqueue_flow_run`: due now it is PENDING and
    queued, due within 15 minutes it is queued with a delay, later the sweep
    queues it. With an idempotency key a repeat of the same request returns the
    first run (``created`` False); the same key with another request is a
    Conflict naming the first run.
    """
    if isinstance(deployment, str):
        deployment = stores.registry.read_deployment(deployment)
    request = request or DeploymentFlowRunCreate()
    create = flow_run_request(deployment, request, idempotency_key=idempotency_key)
    must_exist("parent_flow_run_id", request.parent_flow_run_id, stores.runs.read_flow_run)
    check_runnable(stores, deployment)
    # the key is scoped to the deployment; "the same request" is the caller's request
    run, created = stores.runs.create_flow_run_once(
        create, fingerprint=request_fingerprint(request)
    )
    # a repeat enqueues too: the first call may have died between its two steps
    return enqueue_flow_run(stores, run), created


def check_runnable(stores: Stores, deployment: Deployment) -> None:
    """A deployment runs on its work pool's workers: it needs one, and the pool must exist.

    Conflict (409) naming the deployment otherwise; nothing is read or written beyond
    the pool's record.
    """
    label = f"{deployment.flow_name}/{deployment.name}"
    if deployment.work_pool_name is None:
        raise Conflict(
            f"deployment {label} has no work pool, so no worker would run it: give it one "
            "(work_pool_name, e.g. `default`) and run it again",
            id=deployment.id,
            field="work_pool_name",
        )
    try:
        stores.registry.read_work_pool(deployment.work_pool_name)
    except NotFound:
        raise Conflict(
            f"deployment {label} names work pool {deployment.work_pool_name!r}, which does "
            f"not exist: create it (`stratoflow work-pool create {deployment.work_pool_name}`) "
            "or point the deployment at another pool",
            id=deployment.id,
            field="work_pool_name",
            work_pool_name=deployment.work_pool_name,
        ) from None


def run_deployment(
    stores: Stores,
    deployment: Deployment | str,
    request: DeploymentFlowRunCreate | None = None,
    *,
    idempotency_key: str | None = None,
) -> FlowRun:
    """:func:`run_deployment_once` without saying whether the run is new."""
    return run_deployment_once(stores, deployment, request, idempotency_key=idempotency_key)[0]
