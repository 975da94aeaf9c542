"""Flow runs and task runs in DynamoDB: create, read, list, and orchestrated state changes.

One item per run in the runs table. The item holds the run as a JSON document
(``doc``) plus the attributes the indexes and filters need, a ``state_version``
counter and the state ``history`` (a list of JSON states). A transition is ONE
``UpdateItem`` conditioned on ``state_version``: it writes the new state, bumps
the version and appends to the history. See docs/data-model.md.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal, TypeVar, overload

from runtime.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from runtime.models import (
    FlowRun,
    FlowRunCreate,
    FlowRunFilter,
    OrchestrationResult,
    Page,
    RunBase,
    RunCreateBase,
    TaskRun,
    TaskRunCreate,
    TaskRunFilter,
    new_id,
)
from runtime.names import generate_name
from runtime.orchestration import run_field_updates
from runtime.orchestration.transition import apply_transition
from runtime.resources import TableSpec
from runtime.states import Cancelled, Cancelling, Pending, State, StateType, utcnow
from runtime.stores.dynamo import (
    ConditionFailed,
    Dynamo,
    Item,
    TransactionFailed,
    decode_cursor,
    encode_cursor,
    iso,
)

RunKind = Literal["flow_run", "task_run"]
R = TypeVar("R", FlowRun, TaskRun)

IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1b5a8e-4c1d-4d7e-9a55-2a1f8f0c3b7d")
"""Namespace of run ids derived from idempotency keys (uuid5)."""

MAX_TRANSITION_ATTEMPTS = 8
MAX_HISTORY = 100
"""States kept per run item: the first one and the latest (the item must stay < 400 KB)."""


def run_id_for_key(kind: RunKind, idempotency_key: str) -> str:
    """The deterministic run id for an idempotency key: the same key, the same run."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{kind}:{idempotency_key}"))


def _state_json(state: State) -> str:
    return state.model_dump_json(exclude_defaults=True)


class RunStore:
    """Every operation on flow runs and task runs."""

    def __init__(self, db: Dynamo, table: TableSpec) -> None:
        self.db = db
        self.table = table

    # ------------------------------------------------------------------ items

    @staticmethod
    def to_item(run: FlowRun | TaskRun, history: list[State] | None = None) -> Item:
        """The DynamoDB item for a run (``history`` defaults to its current state)."""
        item: Item = {
            "id": run.id,
            "kind": run.kind,
            "doc": run.model_dump_json(),
            "state_version": run.state_version,
            "created": iso(run.created),
            "state_type": run.state.type.value,
            "state_name": run.state.name,
            "kind_state": f"{run.kind}#{run.state.type.value}",
            "state_timestamp": iso(run.state.timestamp),
            "tags": list(run.tags),
            "history": [_state_json(s) for s in (history or [run.state])],
        }
        if isinstance(run, FlowRun):
            item.update(
                flow_name=run.flow_name,
                parent_id=run.parent_flow_run_id,
                deployment_id=run.deployment_id,
                work_pool_name=run.work_pool_name,
            )
        else:
            item.update(task_key=run.task_key, parent_id=run.flow_run_id)
        return item

    def write_task_run_records(
        self, records: list[tuple[TaskRun, list[State]]], *, guard: bool = False
    ) -> int:
        """Store task-run snapshots written by an engine (each the run's latest state).

        The engine's own process writes them with ``BatchWriteItem`` (no conditions,
        cheapest). With ``guard`` (records that came over the API) each put is
        conditioned on the id being new or already a task run, in transactions of 100,
        so a record can never overwrite a flow run; Conflict names the offending id.
        """
        items = [self.to_item(run, history) for run, history in records]
        if not guard:
            self.db.batch_write(self.table.name, items)
            return len(items)
        for start in range(0, len(items), 100):
            chunk = items[start : start + 100]
            try:
                self.db.transact(
                    [
                        {
                            "Put": {
                                "TableName": self.table.name,
                                "Item": item,
                                "ConditionExpression": "attribute_not_exists(id) OR kind = :k",
                                "ExpressionAttributeValues": {":k": "task_run"},
                            }
                        }
                        for item in chunk
                    ]
                )
            except TransactionFailed as failed:
                bad = [
                    item["id"]
                    for item, code in zip(chunk, failed.reasons, strict=False)
                    if code == "ConditionalCheckFailed"
                ]
                raise Conflict(
                    f"record id(s) {', '.join(bad)} belong to flow runs, not task runs",
                    ids=bad,
                ) from None
        return len(items)

    @staticmethod
    def from_item(item: Item) -> FlowRun | TaskRun:
        """The run stored in an item."""
        if item["kind"] == "flow_run":
            return FlowRun.model_validate_json(item["doc"])
        return TaskRun.model_validate_json(item["doc"])

    # ------------------------------------------------------------------ create

    def create_flow_run(self, request: FlowRunCreate) -> FlowRun:
        """Create a flow run; with an idempotency key, a repeat returns the first run."""
        return self.create_flow_run_once(request)[0]

    def create_flow_run_once(self, request: FlowRunCreate) -> tuple[FlowRun, bool]:
        """:meth:`create_flow_run`, and whether this call created it (False: key repeat)."""
        fields = request.model_dump(exclude={"id", "name", "state", "idempotency_key"})
        run_id, state = self._identity("flow_run", request)
        run = FlowRun(
            id=run_id,
            name=request.name or generate_name(),
            idempotency_key=request.idempotency_key,
            **fields,
        )
        return self._insert(run, state)

    def create_task_run(self, request: TaskRunCreate) -> TaskRun:
        """Create a task run; with an idempotency key, a repeat returns the first run."""
        return self.create_task_run_once(request)[0]

    def create_task_run_once(self, request: TaskRunCreate) -> tuple[TaskRun, bool]:
        """:meth:`create_task_run`, and whether this call created it (False: key repeat)."""
        fields = request.model_dump(exclude={"id", "name", "state", "idempotency_key"})
        run_id, state = self._identity("task_run", request)
        run = TaskRun(
            id=run_id,
            name=request.name or f"{request.task_key}-{run_id[:8]}",
            idempotency_key=request.idempotency_key,
            **fields,
        )
        return self._insert(run, state)

    @staticmethod
    def _identity(kind: RunKind, request: RunCreateBase) -> tuple[str, State]:
        if request.idempotency_key is not None:
            derived = run_id_for_key(kind, request.idempotency_key)
            if request.id is not None and request.id != derived:
                raise InvalidInput(
                    "give either id or idempotency_key, not both", field="idempotency_key"
                )
            run_id = derived
        else:
            run_id = request.id or new_id()
        return run_id, (request.state or Pending()).model_copy(deep=True)

    def _insert(self, run: R, state: State) -> tuple[R, bool]:
        now = utcnow()
        updates = run_field_updates(None, state, now, None)
        run.state = state
        run.created = run.updated = now
        run.run_count = updates.get("run_count_increment", 0)
        run.start_time = updates.get("start_time")
        run.end_time = updates.get("end_time")
        run.resuming = updates.get("resuming", False)
        if state.type is StateType.SCHEDULED:
            run.next_scheduled_start_time = state.details.scheduled_time
            if getattr(run, "expected_start_time", None) is None:
                run.expected_start_time = state.details.scheduled_time
        try:
            self.db.put(
                self.table.name,
                self.to_item(run),
                condition="attribute_not_exists(id)",
            )
        except ConditionFailed as lost:
            if run.idempotency_key is None:
                raise AlreadyExists(f"a run with id {run.id} already exists", id=run.id) from None
            existing = (
                self.from_item(lost.current) if lost.current else self._read_any(run.id, run.kind)
            )
            if not isinstance(existing, type(run)):
                raise Conflict(f"idempotency key is used by a {existing.kind}") from None
            return existing, False
        return run, True

    # ------------------------------------------------------------------ read

    def _read_any(self, run_id: str, kind: RunKind) -> FlowRun | TaskRun:
        item = self.db.get(self.table.name, {"id": run_id})
        if item is None or item["kind"] != kind:
            label = "flow run" if kind == "flow_run" else "task run"
            raise NotFound(f"{label} {run_id} not found", id=run_id)
        return self.from_item(item)

    def read_flow_run(self, run_id: str) -> FlowRun:
        """One flow run (strongly consistent), or NotFound."""
        run = self._read_any(run_id, "flow_run")
        assert isinstance(run, FlowRun)
        return run

    def read_task_run(self, run_id: str) -> TaskRun:
        """One task run (strongly consistent), or NotFound."""
        run = self._read_any(run_id, "task_run")
        assert isinstance(run, TaskRun)
        return run

    def read_state_history(self, run_id: str, kind: RunKind | None = None) -> list[State]:
        """Every state the run has had, oldest first (NotFound unless a run of ``kind``)."""
        item = self.db.get(self.table.name, {"id": run_id}, projection="history, kind", names=None)
        if item is None or (kind is not None and item.get("kind") != kind):
            label = {"flow_run": "flow run", "task_run": "task run"}.get(kind or "", "run")
            raise NotFound(f"{label} {run_id} not found", id=run_id)
        return [State.model_validate_json(s) for s in item.get("history", [])]

    # ------------------------------------------------------------------ list

    def list_flow_runs(
        self, flt: FlowRunFilter | None = None, *, limit: int = 200, cursor: str | None = None
    ) -> Page[FlowRun]:
        """Flow runs matching ``flt``, newest first, ``limit`` per page."""
        flt = flt or FlowRunFilter()
        conditions: dict[str, Any] = {}
        index, pk_name, pk_value = "by_kind", "kind", "flow_run"
        if flt.parent_flow_run_id:
            index, pk_name, pk_value = "by_parent", "parent_id", flt.parent_flow_run_id
        elif flt.deployment_id:
            index, pk_name, pk_value = "by_deployment", "deployment_id", flt.deployment_id
        elif flt.flow_name:
            index, pk_name, pk_value = "by_flow", "flow_name", flt.flow_name
        elif flt.state_types and len(flt.state_types) == 1:
            index, pk_name = "by_state", "kind_state"
            pk_value = f"flow_run#{flt.state_types[0].value}"
        conditions["kind"] = "flow_run"
        for attr in ("flow_name", "deployment_id", "work_pool_name"):
            if getattr(flt, attr) is not None:
                conditions[attr] = getattr(flt, attr)
        if flt.parent_flow_run_id:
            conditions["parent_id"] = flt.parent_flow_run_id
        items = self._list(index, pk_name, pk_value, conditions, flt, limit, cursor)
        return Page[FlowRun](
            items=[FlowRun.model_validate_json(i["doc"]) for i in items.items],
            next_cursor=items.next_cursor,
        )

    def list_task_runs(
        self, flt: TaskRunFilter | None = None, *, limit: int = 200, cursor: str | None = None
    ) -> Page[TaskRun]:
        """Task runs matching ``flt``, newest first, ``limit`` per page."""
        flt = flt or TaskRunFilter()
        index, pk_name, pk_value = "by_kind", "kind", "task_run"
        if flt.flow_run_id:
            index, pk_name, pk_value = "by_parent", "parent_id", flt.flow_run_id
        elif flt.state_types and len(flt.state_types) == 1:
            index, pk_name = "by_state", "kind_state"
            pk_value = f"task_run#{flt.state_types[0].value}"
        conditions: dict[str, Any] = {"kind": "task_run"}
        if flt.task_key:
            conditions["task_key"] = flt.task_key
        if flt.flow_run_id:
            conditions["parent_id"] = flt.flow_run_id
        items = self._list(index, pk_name, pk_value, conditions, flt, limit, cursor)
        return Page[TaskRun](
            items=[TaskRun.model_validate_json(i["doc"]) for i in items.items],
            next_cursor=items.next_cursor,
        )

    def _list(
        self,
        index: str,
        pk_name: str,
        pk_value: str,
        equals: dict[str, Any],
        flt: FlowRunFilter | TaskRunFilter,
        limit: int,
        cursor: str | None,
    ) -> Page[Item]:
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000", field="limit")
        key_names = self.table.key_names(index)
        start = self._start_key(cursor, key_names, pk_name, pk_value)
        names: dict[str, str] = {"#pk": pk_name}
        values: dict[str, Any] = {":pk": pk_value}
        key_condition = "#pk = :pk"
        filters: list[str] = []
        sort_is_created = index != "by_state"
        after = iso(flt.created_after) if flt.created_after else None
        before = iso(flt.created_before) if flt.created_before else None
        if after or before:
            target = key_condition if sort_is_created else None
            names["#created"] = "created"
            if after and before:
                clause = "#created BETWEEN :after AND :before"
                values.update({":after": after, ":before": before})
            elif after:
                clause, values[":after"] = "#created >= :after", after
            else:
                clause, values[":before"] = "#created <= :before", before
            if target is not None:
                key_condition = f"{key_condition} AND {clause}"
            else:
                filters.append(clause)
        for i, (attr, value) in enumerate(sorted(equals.items())):
            if attr == pk_name:
                continue
            names[f"#e{i}"] = attr
            values[f":e{i}"] = value
            filters.append(f"#e{i} = :e{i}")
        if flt.state_types:
            names["#st"] = "state_type"
            keys = []
            for i, st in enumerate(flt.state_types):
                values[f":st{i}"] = st.value
                keys.append(f":st{i}")
            filters.append(f"#st IN ({', '.join(keys)})")
        if flt.state_names:
            names["#sn"] = "state_name"
            keys = []
            for i, sn in enumerate(flt.state_names):
                values[f":sn{i}"] = sn
                keys.append(f":sn{i}")
            filters.append(f"#sn IN ({', '.join(keys)})")
        for i, tag in enumerate(flt.tags_all or []):
            names["#tags"] = "tags"
            values[f":tag{i}"] = tag
            filters.append(f"contains(#tags, :tag{i})")
        found: list[Item] = []
        stream: Iterator[Item] = self.db.query(
            self.table.name,
            index=index,
            key_condition=key_condition,
            filter_expression=" AND ".join(filters) or None,
            names=names,
            values=values,
            forward=False,
            start_key=start,
            page_size=min(1000, max(limit, 25) * 2),
        )
        for item in stream:
            found.append(item)
            if len(found) == limit + 1:
                break
        next_cursor = None
        if len(found) > limit:
            found = found[:limit]
            last = found[-1]
            next_cursor = encode_cursor({k: last[k] for k in key_names})
        return Page[Item](items=found, next_cursor=next_cursor)

    @staticmethod
    def _start_key(
        cursor: str | None, key_names: tuple[str, ...], pk_name: str, pk_value: str
    ) -> dict[str, Any] | None:
        """The query's ExclusiveStartKey from a cursor this listing returned, else InvalidInput.

        A cursor of another listing (other index or partition) would reach DynamoDB as
        an invalid start key; it is refused here instead.
        """
        if not cursor:
            return None
        try:
            key = decode_cursor(cursor)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="cursor") from None
        if (
            set(key) != set(key_names)
            or key.get(pk_name) != pk_value
            or not all(isinstance(v, str) and v for v in key.values())
        ):
            raise InvalidInput("cursor does not belong to this listing", field="cursor")
        return key

    # ------------------------------------------------------------------ transitions

    @overload
    def set_state(
        self,
        kind: Literal["flow_run"],
        run_id: str,
        state: State,
        *,
        force: bool = ...,
        now: datetime | None = ...,
    ) -> OrchestrationResult: ...
    @overload
    def set_state(
        self,
        kind: Literal["task_run"],
        run_id: str,
        state: State,
        *,
        force: bool = ...,
        now: datetime | None = ...,
    ) -> OrchestrationResult: ...

    def set_state(
        self,
        kind: RunKind,
        run_id: str,
        state: State,
        *,
        force: bool = False,
        now: datetime | None = None,
    ) -> OrchestrationResult:
        """Propose ``state`` for a run: the rules decide, one conditional write persists it.

        The write is conditioned on the version read; if another party changed the
        run in between, the rules run again on the run as it is now, so a lost race
        comes back as a rejection naming the current state.
        """
        item = self.db.get(self.table.name, {"id": run_id})
        if item is None or item["kind"] != kind:
            label = "flow run" if kind == "flow_run" else "task run"
            raise NotFound(f"{label} {run_id} not found", id=run_id)
        for _ in range(MAX_TRANSITION_ATTEMPTS):
            run = self.from_item(item)
            result, written, parent_check = self._decide(run, state, force, now)
            if written is None:
                return result
            try:
                self._write_transition(run, written, item.get("history"), parent_check)
                return result
            except ConditionFailed as lost:
                item = lost.current or self.db.get(self.table.name, {"id": run_id})
                if item is None:
                    raise NotFound(f"run {run_id} was deleted", id=run_id) from None
        raise Conflict(f"run {run_id} kept changing; gave up after {MAX_TRANSITION_ATTEMPTS} tries")

    def cancel_flow_run(self, run_id: str, *, now: datetime | None = None) -> OrchestrationResult:
        """Cancel a flow run through the rules: Cancelled if it has not started, else Cancelling.

        SCHEDULED, PENDING and PAUSED runs (no process to stop, or one waiting to
        resume) are proposed Cancelled; RUNNING runs Cancelling, so their worker stops
        them (a CANCELLING run too: the rules refuse it, as only its worker may end it).
        Final runs are proposed Cancelled and the rules refuse that. The target is chosen
        again on every attempt, so a run claimed in between gets Cancelling, never
        Cancelled under its process.
        """
        item = self.db.get(self.table.name, {"id": run_id})
        if item is None or item["kind"] != "flow_run":
            raise NotFound(f"flow run {run_id} not found", id=run_id)
        for _ in range(MAX_TRANSITION_ATTEMPTS):
            run = self.from_item(item)
            if run.state.type in (StateType.RUNNING, StateType.CANCELLING):
                proposed = Cancelling(message="Cancellation requested.")
            else:
                proposed = Cancelled(message="Cancelled on request.")
            result, written, _ = self._decide(run, proposed, False, now)
            if written is None:
                return result
            try:
                self._write_transition(run, written, item.get("history"))
                return result
            except ConditionFailed as lost:
                item = lost.current or self.db.get(self.table.name, {"id": run_id})
                if item is None:
                    raise NotFound(f"run {run_id} was deleted", id=run_id) from None
        raise Conflict(f"run {run_id} kept changing; gave up after {MAX_TRANSITION_ATTEMPTS} tries")

    def _decide(
        self, run: FlowRun | TaskRun, proposed: State, force: bool, now: datetime | None
    ) -> tuple[OrchestrationResult, FlowRun | TaskRun | None, tuple[str, int] | None]:
        """Run the rules; also return the parent flow run (id, version) the decision read.

        A task entering RUNNING is judged against its flow run's state, so its write is
        then conditioned on that flow run not having changed since (see _write_transition).
        """
        if isinstance(run, FlowRun):
            result, flow_new = apply_transition(run, proposed, force=force, now=now)
            return result, flow_new, None
        flow_state = None
        parent_check = None
        if run.flow_run_id and proposed.type is StateType.RUNNING and not force:
            parent = self.db.get(
                self.table.name,
                {"id": run.flow_run_id},
                projection="#d, state_version",
                names={"#d": "doc"},
            )
            if parent is not None:
                flow_state = FlowRun.model_validate_json(parent["doc"]).state
                parent_check = (run.flow_run_id, int(parent["state_version"]))
        result, task_new = apply_transition(
            run, proposed, force=force, now=now, flow_run_state=flow_state
        )
        return result, task_new, parent_check

    def _write_transition(
        self,
        old: FlowRun | TaskRun,
        new: FlowRun | TaskRun,
        history: list[str] | None = None,
        parent_check: tuple[str, int] | None = None,
    ) -> None:
        """Persist an accepted transition: one UpdateItem conditioned on ``state_version``.

        The history is appended, keeping the first state and the latest ones once it
        reaches MAX_HISTORY (an item must stay under DynamoDB's 400 KB). With
        ``parent_check`` the update is a transaction that also checks the parent flow
        run's version, so a task never starts on a flow-run state that just changed.
        """
        values: dict[str, Any] = {
            ":doc": new.model_dump_json(),
            ":nv": new.state_version,
            ":v": old.state_version,
            ":st": new.state.type.value,
            ":sn": new.state.name,
            ":ks": f"{new.kind}#{new.state.type.value}",
            ":ts": iso(new.state.timestamp),
        }
        entry = _state_json(new.state)
        if history is not None and len(history) >= MAX_HISTORY:
            values[":h"] = [history[0], *history[-(MAX_HISTORY - 2) :], entry]
            set_history = "history = :h"
        else:
            values[":h"] = [entry]
            set_history = "history = list_append(history, :h)"
        update = (
            "SET #doc = :doc, state_version = :nv, state_type = :st, state_name = :sn, "
            f"kind_state = :ks, state_timestamp = :ts, {set_history}"
        )
        if parent_check is None:
            self.db.update(
                self.table.name,
                {"id": old.id},
                update,
                condition="state_version = :v",
                names={"#doc": "doc"},
                values=values,
                return_new=False,
            )
            return
        parent_id, parent_version = parent_check
        try:
            self.db.transact(
                [
                    {
                        "Update": {
                            "TableName": self.table.name,
                            "Key": {"id": old.id},
                            "UpdateExpression": update,
                            "ConditionExpression": "state_version = :v",
                            "ExpressionAttributeNames": {"#doc": "doc"},
                            "ExpressionAttributeValues": values,
                        }
                    },
                    {
                        "ConditionCheck": {
                            "TableName": self.table.name,
                            "Key": {"id": parent_id},
                            "ConditionExpression": "state_version = :pv",
                            "ExpressionAttributeValues": {":pv": parent_version},
                        }
                    },
                ]
            )
        except TransactionFailed as failed:
            # either side changed: read the task run again and let the rules decide again
            raise ConditionFailed(failed.items[0] if failed.items else None) from None

    def delete_run(self, run_id: str) -> None:
        """Delete a run record (no-op when absent)."""
        self.db.delete(self.table.name, {"id": run_id})


def runs_as_json(runs: list[RunBase]) -> str:
    """A JSON array of runs (for CLI and debugging output)."""
    return json.dumps([json.loads(r.model_dump_json()) for r in runs])
