"""``StratoflowClient``: one method per route of the HTTP API (docs/api.md), returning models.

>>> client = StratoflowClient("http://127.0.0.1:4200")          # or STRATOFLOW_API_URL
>>> run = client.create_flow_run(FlowRunCreate(flow_name="etl"), idempotency_key="etl-1")
>>> client.set_flow_run_state(run.id, Running()).status          # 'ACCEPT', or 'REJECT' ...
>>> page = client.list_flow_runs(flow_name="etl", state_types=["COMPLETED"], limit=50)

Configuration: ``api_url`` (else ``STRATOFLOW_API_URL``); ``token`` (else
``STRATOFLOW_API_TOKEN``) sends ``Authorization: Bearer <token>``; ``sign``
(default: True unless the URL is on 127.0.0.1/localhost or a token is set)
SigV4-signs every request for ``execute-api`` with botocore's credential chain;
``region`` (default: from an ``execute-api`` URL, ``STRATOFLOW_REGION``, or
botocore's). Requests answered 429 or 5xx, or that fail to connect, are
retried ``retries`` times with exponential backoff and jitter, honouring
``Retry-After``, when repeating them is safe (see :mod:`runtime.http.transport`:
a request without a client-chosen id is never repeated after a read timeout);
other 4xx raise at once. Errors are the typed classes of
:mod:`sdk.api_errors`.

State proposals: ``set_flow_run_state`` / ``set_task_run_state`` /
``cancel_flow_run`` return the :class:`~runtime.models.OrchestrationResult`
even when the rules refuse (status REJECT or ABORT, with the run's current
state), as the engine needs; pass ``raise_on_reject=True`` to get
:class:`sdk.api_errors.TransitionRejected` (``.state``, ``.result``) instead.

The engine-facing core (runs, logs, limits and leases, results, cache) is
:class:`runtime.http.client.HttpApi`; this class adds flows, deployments, work
pools and pagination.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from runtime.http.client import HttpApi
from runtime.http.transport import ApiTransport, segment
from runtime.models import (
    Deployment,
    DeploymentCreate,
    DeploymentFlowRunCreate,
    DeploymentUpdate,
    FlowRun,
    FlowSummary,
    OrchestrationResult,
    Page,
    WorkPool,
    WorkPoolCreate,
    WorkPoolStatus,
    WorkPoolUpdate,
)

__all__ = ["ApiTransport", "HttpApi", "StratoflowClient"]

T = TypeVar("T")


class StratoflowClient(HttpApi):
    """The Stratoflow HTTP API client (see the module docstring); thread-safe."""

    def __repr__(self) -> str:
        auth = "sigv4" if self.transport.sign else ("token" if self.transport.token else "none")
        return f"StratoflowClient({self.api_url!r}, auth={auth})"

    def __enter__(self) -> StratoflowClient:
        return self

    # ------------------------------------------------------------------ pauses and inputs

    def resume_flow_run(
        self, flow_run_id: str, run_input: dict[str, Any] | None = None
    ) -> OrchestrationResult:
        """``POST /flow_runs/{id}/resume``: 422 (ValidationError) on input the run refuses."""
        body = self._call(
            "POST", f"/flow_runs/{segment(flow_run_id)}/resume", json_body={"run_input": run_input}
        )
        return OrchestrationResult.model_validate(body)

    def create_flow_run_input(
        self, flow_run_id: str, key: str, value: Any, sender: str | None = None
    ) -> None:
        """``POST /flow_runs/{id}/input`` (a value is written once per key)."""
        self._call(
            "POST",
            f"/flow_runs/{segment(flow_run_id)}/input",
            json_body={"key": key, "value": value, "sender": sender},
            idempotent=True,
        )

    def read_flow_run_input(self, flow_run_id: str, key: str) -> Any:
        """``GET /flow_runs/{id}/input/{key}``: the decoded value (NotFound when absent)."""
        body = self._call("GET", f"/flow_runs/{segment(flow_run_id)}/input/{segment(key)}")
        return body["value"]

    def delete_flow_run_input(self, flow_run_id: str, key: str) -> None:
        """``DELETE /flow_runs/{id}/input/{key}``."""
        self._call("DELETE", f"/flow_runs/{segment(flow_run_id)}/input/{segment(key)}")

    # ------------------------------------------------------------------ pagination

    @staticmethod
    def paginate(method: Callable[..., Page[T]], /, *args: Any, **kwargs: Any) -> Iterator[T]:
        """Every item of a listing, following ``next_cursor``.

        ``for run in client.paginate(client.list_flow_runs, flow_name="etl"): ...``;
        ``client.paginate(client.read_logs, flow_run_id, limit=1000)``.
        """
        cursor = kwargs.pop("cursor", None)
        while True:
            page = method(*args, cursor=cursor, **kwargs)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # ------------------------------------------------------------------ flows

    def list_flows(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[FlowSummary]:
        """``GET /flows``: flows that have runs or deployments."""
        body = self._call("GET", "/flows", query={"limit": limit, "cursor": cursor})
        return Page[FlowSummary].model_validate(body)

    # ------------------------------------------------------------------ deployments

    def create_deployment(self, request: DeploymentCreate) -> Deployment:
        """``POST /deployments``: create, or update the one with this flow and name (upsert)."""
        body = self._call("POST", "/deployments", json_body=request)
        return Deployment.model_validate(body)

    def read_deployment(self, deployment_id: str) -> Deployment:
        """``GET /deployments/{id}``."""
        return Deployment.model_validate(
            self._call("GET", f"/deployments/{segment(deployment_id)}")
        )

    def read_deployment_by_name(self, flow_name: str, name: str | None = None) -> Deployment:
        """``GET /deployments/name/{flow_name}/{name}``; also ``("flow/deployment")`` as Prefect."""
        if name is None:
            flow_name, sep, name = flow_name.partition("/")
            if not sep or not name:
                raise ValueError("give flow_name and name, or one 'flow-name/deployment-name'")
        path = f"/deployments/name/{segment(flow_name)}/{segment(name)}"
        return Deployment.model_validate(self._call("GET", path))

    def list_deployments(
        self,
        *,
        flow_name: str | None = None,
        work_pool_name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Deployment]:
        """``GET /deployments``: one page."""
        query = {
            "flow_name": flow_name,
            "work_pool_name": work_pool_name,
            "limit": limit,
            "cursor": cursor,
        }
        return Page[Deployment].model_validate(self._call("GET", "/deployments", query=query))

    def update_deployment(
        self, deployment_id: str, update: DeploymentUpdate | None = None, **fields: Any
    ) -> Deployment:
        """``PATCH /deployments/{id}``: only the given fields change (a model, or keywords)."""
        request = update if update is not None else DeploymentUpdate(**fields)
        body = self._call(
            "PATCH",
            f"/deployments/{segment(deployment_id)}",
            json_body=request.model_dump(mode="json", exclude_unset=True),
        )
        return Deployment.model_validate(body)

    def delete_deployment(self, deployment_id: str) -> None:
        """``DELETE /deployments/{id}``."""
        self._call("DELETE", f"/deployments/{segment(deployment_id)}")

    def create_flow_run_from_deployment(
        self,
        deployment_id: str,
        *,
        parameters: dict[str, Any] | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        scheduled_time: datetime | None = None,
        idempotency_key: str | None = None,
        work_queue_name: str | None = None,
        job_variables: dict[str, Any] | None = None,
        parent_flow_run_id: str | None = None,
    ) -> FlowRun:
        """``POST /deployments/{id}/create_flow_run``: a run, sent to its pool's queue.

        ``parameters`` are merged over the deployment's (and validated against its
        schema when it enforces one).
        """
        given = {
            "parameters": parameters,
            "name": name,
            "tags": tags,
            "scheduled_time": scheduled_time,
            "idempotency_key": idempotency_key,
            "work_queue_name": work_queue_name,
            "job_variables": job_variables,
            "parent_flow_run_id": parent_flow_run_id,
        }
        request = DeploymentFlowRunCreate(**{k: v for k, v in given.items() if v is not None})
        body = self._call(
            "POST",
            f"/deployments/{segment(deployment_id)}/create_flow_run",
            json_body=request.model_dump(mode="json", exclude_unset=True),
        )
        return FlowRun.model_validate(body)

    # ------------------------------------------------------------------ work pools

    def create_work_pool(self, request: WorkPoolCreate) -> WorkPool:
        """``POST /work_pools`` (AlreadyExists if it exists)."""
        return WorkPool.model_validate(self._call("POST", "/work_pools", json_body=request))

    def read_work_pool(self, name: str) -> WorkPool:
        """``GET /work_pools/{name}``."""
        return WorkPool.model_validate(self._call("GET", f"/work_pools/{segment(name)}"))

    def list_work_pools(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[WorkPool]:
        """``GET /work_pools``: one page."""
        body = self._call("GET", "/work_pools", query={"limit": limit, "cursor": cursor})
        return Page[WorkPool].model_validate(body)

    def update_work_pool(
        self, name: str, update: WorkPoolUpdate | None = None, **fields: Any
    ) -> WorkPool:
        """``PATCH /work_pools/{name}``: only the given fields change."""
        request = update if update is not None else WorkPoolUpdate(**fields)
        body = self._call(
            "PATCH",
            f"/work_pools/{segment(name)}",
            json_body=request.model_dump(mode="json", exclude_unset=True),
        )
        return WorkPool.model_validate(body)

    def pause_work_pool(self, name: str) -> WorkPool:
        """``POST /work_pools/{name}/pause``."""
        return WorkPool.model_validate(self._call("POST", f"/work_pools/{segment(name)}/pause"))

    def resume_work_pool(self, name: str) -> WorkPool:
        """``POST /work_pools/{name}/resume``."""
        return WorkPool.model_validate(self._call("POST", f"/work_pools/{segment(name)}/resume"))

    def delete_work_pool(self, name: str, *, force: bool = False) -> None:
        """``DELETE /work_pools/{name}`` (Conflict while it has runs, unless ``force``)."""
        query = {"force": "true"} if force else None
        self._call("DELETE", f"/work_pools/{segment(name)}", query=query)

    def read_work_pool_status(self, name: str) -> WorkPoolStatus:
        """``GET /work_pools/{name}/status``: its queue's backlog, runs and slots."""
        body = self._call("GET", f"/work_pools/{segment(name)}/status")
        return WorkPoolStatus.model_validate(body)
