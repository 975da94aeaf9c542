"""Deployments, work pools and flows in DynamoDB: the registry table.

One table (``<prefix>-registry``, partition key ``pk``) holds three kinds of
item, told apart by ``item_type``; the ``by_type`` GSI (``item_type``,
``sort_value``) lists each kind in order:

``deployment#<id>``
    ``id`` is ``uuid5(DEPLOYMENT_NAMESPACE, "<flow_name>/<name>")``, so the
    name decides the key: an upsert by name is one conditional write and a
    lookup by name is one ``GetItem``. ``sort_value`` is ``<flow_name>/<name>``
    (listing by flow is a ``begins_with``), ``doc`` the :class:`Deployment` as
    JSON, ``rev`` the optimistic-concurrency counter every write checks and bumps.
``work_pool#<name>``
    ``sort_value`` the name, ``doc`` the :class:`WorkPool`, ``rev`` as above.
``flow#<name>``
    ``sort_value`` the name, ``name`` and ``created``: the flows that have
    deployments (or runs, for callers that :meth:`RegistryStore.ensure_flow`).

Names of flows and deployments may not contain ``/`` (as in Prefect): it
separates them in the id, the sort value and the ``/deployments/name/<flow>/<name>``
route. See docs/data-model.md.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from runtime.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from runtime.limits import DOC_MAX_BYTES
from runtime.models import (
    Deployment,
    DeploymentCreate,
    DeploymentUpdate,
    FlowSummary,
    Page,
    WorkPool,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from runtime.resources import TableSpec
from runtime.states import utcnow
from runtime.stores.dynamo import (
    ConditionFailed,
    Dynamo,
    Item,
    iso,
)
from runtime.stores.paging import Listing, batch_get, read_page

DEPLOYMENT_NAMESPACE = uuid.UUID("3d0c2f7e-8b7a-4f0e-b3c1-5e2a9d4c6f18")
"""Namespace of deployment ids (uuid5 of ``"<flow_name>/<name>"``)."""

MAX_ATTEMPTS = 8

MAX_DOC_BYTES = DOC_MAX_BYTES
"""Largest document (JSON) written: a DynamoDB item holds 400 KB (see runtime.limits)."""

D = TypeVar("D", Deployment, WorkPool)

DEPLOYMENT = "deployment"
WORK_POOL = "work_pool"
FLOW = "flow"


def deployment_id_for(flow_name: str, name: str) -> str:
    """The id of the deployment ``name`` of flow ``flow_name``: the same name, the same id."""
    return str(uuid.uuid5(DEPLOYMENT_NAMESPACE, f"{flow_name}/{name}"))


def _invalid(field: str, msg: str, **details: Any) -> InvalidInput:
    """InvalidInput naming ``body.<field>``, with ``details.errors`` like a pydantic 422."""
    loc = ["body", *field.split(".")]
    return InvalidInput(
        f"body.{field}: {msg}",
        field=field,
        errors=[{"loc": loc, "msg": msg, "type": "value_error"}],
        **details,
    )


def _sized(doc: str) -> str:
    size = len(doc.encode())
    if size > MAX_DOC_BYTES:
        raise InvalidInput(
            f"body: {size} bytes of JSON, more than the {MAX_DOC_BYTES} an item can hold",
            field="body",
            errors=[{"loc": ["body"], "msg": "too large", "type": "value_error"}],
        )
    return doc


def _check_name(value: str, field: str) -> None:
    if "/" in value:
        raise _invalid(field, "must not contain '/'", value=value)


def _check_schema(schema: dict[str, Any] | None) -> None:
    """InvalidInput when ``parameter_openapi_schema`` is not a valid JSON Schema."""
    if schema is None:
        return
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise _invalid(
            "parameter_openapi_schema", f"not a valid JSON Schema: {exc.message}"
        ) from None


class RegistryStore:
    """Every operation on deployments, work pools and flows (see the module docstring)."""

    def __init__(self, db: Dynamo, table: TableSpec) -> None:
        self.db = db
        self.table = table

    # ------------------------------------------------------------------ deployments

    @staticmethod
    def _deployment_item(deployment: Deployment, rev: int) -> Item:
        doc = _sized(deployment.model_dump_json())
        return {
            "pk": f"{DEPLOYMENT}#{deployment.id}",
            "item_type": DEPLOYMENT,
            "sort_value": f"{deployment.flow_name}/{deployment.name}",
            "id": deployment.id,
            "flow_name": deployment.flow_name,
            "name": deployment.name,
            "work_pool_name": deployment.work_pool_name,
            "doc": doc,
            "rev": rev,
            "created": iso(deployment.created),
            "updated": iso(deployment.updated),
        }

    def upsert_deployment(self, request: DeploymentCreate) -> tuple[Deployment, bool]:
        """Create the deployment ``request.flow_name``/``request.name``, or replace it.

        Returns ``(deployment, created)``. Creating is one ``PutItem`` conditioned on
        the item being absent; when it exists, that failed condition returns it, and
        the replacement (same id, same ``created``) is a ``PutItem`` conditioned on
        the ``rev`` it saw, retried on the item as it is now if someone wrote between.
        """
        _check_name(request.flow_name, "flow_name")
        _check_name(request.name, "name")
        _check_schema(request.parameter_openapi_schema)
        deployment_id = deployment_id_for(request.flow_name, request.name)
        now = utcnow()
        fields = request.model_dump()
        deployment = Deployment(id=deployment_id, created=now, updated=now, **fields)
        key = {"pk": f"{DEPLOYMENT}#{deployment_id}"}
        try:
            self.db.put(
                self.table.name,
                self._deployment_item(deployment, 0),
                condition="attribute_not_exists(pk)",
            )
            return deployment, True
        except ConditionFailed as lost:
            current = lost.current
        for _ in range(MAX_ATTEMPTS):
            if current is None:  # deleted in between: create it again
                try:
                    self.db.put(
                        self.table.name,
                        self._deployment_item(deployment, 0),
                        condition="attribute_not_exists(pk)",
                    )
                    return deployment, True
                except ConditionFailed as again:
                    current = again.current
                    continue
            created = Deployment.model_validate_json(current["doc"]).created
            replaced = Deployment(id=deployment_id, created=created, updated=utcnow(), **fields)
            try:
                self.db.put(
                    self.table.name,
                    self._deployment_item(replaced, current["rev"] + 1),
                    condition="rev = :rev",
                    values={":rev": current["rev"]},
                )
                return replaced, False
            except ConditionFailed as again:
                current = again.current
        raise Conflict(f"deployment {key['pk']} kept changing while being written")

    def read_deployment(self, deployment_id: str) -> Deployment:
        """One deployment (strongly consistent), or NotFound."""
        item = self.db.get(self.table.name, {"pk": f"{DEPLOYMENT}#{deployment_id}"})
        if item is None:
            raise NotFound(f"deployment {deployment_id} not found", id=deployment_id)
        return Deployment.model_validate_json(item["doc"])

    def read_deployment_by_name(self, flow_name: str, name: str) -> Deployment:
        """The deployment ``name`` of flow ``flow_name`` (one ``GetItem``), or NotFound."""
        item = self.db.get(
            self.table.name, {"pk": f"{DEPLOYMENT}#{deployment_id_for(flow_name, name)}"}
        )
        if item is None:
            raise NotFound(
                f"deployment {flow_name}/{name} not found", flow_name=flow_name, name=name
            )
        return Deployment.model_validate_json(item["doc"])

    def list_deployments(
        self,
        flow_name: str | None = None,
        work_pool_name: str | None = None,
        *,
        limit: int = 200,
        cursor: str | None = None,
    ) -> Page[Deployment]:
        """Deployments ordered by flow name then name, optionally of one flow and/or pool."""
        prefix = None
        if flow_name is not None:
            _check_name(flow_name, "flow_name")
            prefix = f"{flow_name}/"
        filters = {"work_pool_name": work_pool_name} if work_pool_name is not None else {}
        page = self._list(DEPLOYMENT, limit, cursor, prefix=prefix, equals=filters)
        return Page[Deployment](
            items=[Deployment.model_validate_json(i["doc"]) for i in page.items],
            next_cursor=page.next_cursor,
        )

    def update_deployment(self, deployment_id: str, update: DeploymentUpdate) -> Deployment:
        """Change the fields given in ``update`` (``exclude_unset``); the others stay.

        A ``PutItem`` conditioned on the ``rev`` read, retried on the item as it is now
        when someone wrote in between, so no concurrent change is lost.
        """
        changes = update.model_dump(exclude_unset=True)
        for field, value in changes.items():
            if value is None and Deployment.model_fields[field].default is not None:
                raise _invalid(field, "may not be null")
        if "parameter_openapi_schema" in changes:
            _check_schema(changes["parameter_openapi_schema"])
        key = {"pk": f"{DEPLOYMENT}#{deployment_id}"}
        current = self.db.get(self.table.name, key)

        def apply(doc: str) -> Deployment:
            data = json.loads(doc)
            data.update(update.model_dump(mode="json", exclude_unset=True))
            data["updated"] = utcnow().isoformat()
            return Deployment.model_validate(data)

        return self._replace(
            key,
            current,
            apply,
            lambda d, rev: self._deployment_item(d, rev),
            f"deployment {deployment_id}",
        )

    def delete_deployment(self, deployment_id: str) -> None:
        """Delete a deployment, or NotFound. Its runs stay (they keep ``deployment_id``)."""
        try:
            self.db.delete(
                self.table.name,
                {"pk": f"{DEPLOYMENT}#{deployment_id}"},
                condition="attribute_exists(pk)",
            )
        except ConditionFailed:
            raise NotFound(f"deployment {deployment_id} not found", id=deployment_id) from None

    # ------------------------------------------------------------------ work pools

    @staticmethod
    def _pool_item(pool: WorkPool, rev: int) -> Item:
        doc = _sized(pool.model_dump_json())
        return {
            "pk": f"{WORK_POOL}#{pool.name}",
            "item_type": WORK_POOL,
            "sort_value": pool.name,
            "name": pool.name,
            "doc": doc,
            "rev": rev,
            "created": iso(pool.created),
            "updated": iso(pool.updated),
        }

    def create_work_pool(self, request: WorkPoolCreate) -> WorkPool:
        """Create a work pool; AlreadyExists if the name is taken."""
        now = utcnow()
        pool = WorkPool(created=now, updated=now, **request.model_dump())
        try:
            self.db.put(
                self.table.name, self._pool_item(pool, 0), condition="attribute_not_exists(pk)"
            )
        except ConditionFailed:
            raise AlreadyExists(
                f"work pool {request.name!r} already exists", name=request.name
            ) from None
        return pool

    def read_work_pool(self, name: str) -> WorkPool:
        """One work pool (strongly consistent), or NotFound."""
        item = self.db.get(self.table.name, {"pk": f"{WORK_POOL}#{name}"})
        if item is None:
            raise NotFound(f"work pool {name!r} not found", name=name)
        return WorkPool.model_validate_json(item["doc"])

    def list_work_pools(self, *, limit: int = 200, cursor: str | None = None) -> Page[WorkPool]:
        """Work pools by name."""
        page = self._list(WORK_POOL, limit, cursor)
        return Page[WorkPool](
            items=[WorkPool.model_validate_json(i["doc"]) for i in page.items],
            next_cursor=page.next_cursor,
        )

    def update_work_pool(self, name: str, update: WorkPoolUpdate) -> WorkPool:
        """Change the fields given in ``update``; conditioned on ``rev``, retried on conflict."""
        changes = update.model_dump(exclude_unset=True)
        for field, value in changes.items():
            if value is None and WorkPool.model_fields[field].default is not None:
                raise _invalid(field, "may not be null")
        return self._update_pool(name, update.model_dump(mode="json", exclude_unset=True))

    def pause_work_pool(self, name: str) -> WorkPool:
        """Pause a work pool: workers stop taking its runs."""
        return self._update_pool(name, {"paused": True})

    def resume_work_pool(self, name: str) -> WorkPool:
        """Resume a paused work pool."""
        return self._update_pool(name, {"paused": False})

    def _update_pool(self, name: str, changes: dict[str, Any]) -> WorkPool:
        key = {"pk": f"{WORK_POOL}#{name}"}

        def apply(doc: str) -> WorkPool:
            data = json.loads(doc)
            data.update(changes)
            data["updated"] = utcnow().isoformat()
            return WorkPool.model_validate(data)

        return self._replace(
            key, self.db.get(self.table.name, key), apply, self._pool_item, f"work pool {name!r}"
        )

    def delete_work_pool(self, name: str) -> None:
        """Delete a work pool, or NotFound. Deployments naming it keep the name."""
        try:
            self.db.delete(
                self.table.name, {"pk": f"{WORK_POOL}#{name}"}, condition="attribute_exists(pk)"
            )
        except ConditionFailed:
            raise NotFound(f"work pool {name!r} not found", name=name) from None

    # ------------------------------------------------------------------ flows

    def ensure_flow(self, name: str) -> FlowSummary:
        """Record that flow ``name`` exists; idempotent (the first ``created`` is kept)."""
        now = utcnow()
        try:
            self.db.put(
                self.table.name,
                {
                    "pk": f"{FLOW}#{name}",
                    "item_type": FLOW,
                    "sort_value": name,
                    "name": name,
                    "created": iso(now),
                },
                condition="attribute_not_exists(pk)",
            )
        except ConditionFailed as lost:
            if lost.current is not None:
                return FlowSummary(
                    name=name, created=datetime.fromisoformat(lost.current["created"])
                )
        return FlowSummary(name=name, created=now)

    def list_flows(self, *, limit: int = 200, cursor: str | None = None) -> Page[FlowSummary]:
        """Known flows by name."""
        page = self._list(FLOW, limit, cursor)
        return Page[FlowSummary](
            items=[
                FlowSummary(name=i["name"], created=datetime.fromisoformat(i["created"]))
                for i in page.items
            ],
            next_cursor=page.next_cursor,
        )

    # ------------------------------------------------------------------ shared

    def _replace(
        self,
        key: dict[str, str],
        current: Item | None,
        apply: Callable[[str], D],
        to_item: Callable[[D, int], Item],
        label: str,
    ) -> D:
        """Read-modify-write of one ``doc`` item, conditioned on ``rev``; retried on conflict."""
        for _ in range(MAX_ATTEMPTS):
            if current is None:
                raise NotFound(f"{label} not found", key=key["pk"])
            obj = apply(current["doc"])
            try:
                self.db.put(
                    self.table.name,
                    to_item(obj, current["rev"] + 1),
                    condition="rev = :rev",
                    values={":rev": current["rev"]},
                )
                return obj
            except ConditionFailed as lost:
                current = lost.current
        raise Conflict(f"{label} kept changing while being updated")

    def _list(
        self,
        item_type: str,
        limit: int,
        cursor: str | None,
        *,
        prefix: str | None = None,
        equals: dict[str, Any] | None = None,
    ) -> Page[Item]:
        """One page of ``item_type`` items in ``sort_value`` order (``runtime.stores.paging``)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        condition = None
        if prefix is not None:
            names["#s"] = "sort_value"
            values[":prefix"] = prefix
            condition = "begins_with(#s, :prefix)"
        listing = Listing(
            self.table,
            "by_type",
            (item_type,),
            forward=True,
            range_condition=condition,
            names=names,
            values=values,
            position_ok=lambda key: prefix is None or key["sort_value"].startswith(prefix),
        )
        wanted = sorted((equals or {}).items())
        page = read_page(
            self.db,
            listing,
            limit=limit,
            cursor=cursor,
            fetch=lambda entries: batch_get(
                self.db, self.table.name, [{"pk": e["pk"]} for e in entries], ("pk",)
            ),
            matches=lambda item: all(item.get(k) == v for k, v in wanted),
        )
        return Page[Item](items=page.items, next_cursor=page.next_cursor)
