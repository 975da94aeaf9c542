"""Flow runs and task runs in DynamoDB: create, read, list, and orchestrated state changes.

One item per run in the runs table. The item holds the run as a JSON document
(``doc``) plus the attributes the indexes and filters need, a ``state_version``
counter and the state ``history`` (a list of JSON states). A transition is ONE
``UpdateItem`` conditioned on ``state_version``: it writes the new state, bumps
the version and appends to the history. Every item is sized below DynamoDB's
400 KB (``runtime.limits``): the history keeps its first state and as many of the
latest as fit, and never an inline result value. Idempotency keys are scoped
(per flow, deployment, or flow run and task) and bound to a fingerprint of the
creation request. See docs/data-model.md.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, overload

from runtime.backoff import Backoff
from runtime.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    ItemTooLarge,
    NotFound,
    TransactionConflict,
)
from runtime.limits import (
    BATCH_WRITE_MAX_ITEMS,
    DEFAULT_RETENTION_DAYS,
    ITEM_BUDGET_BYTES,
    TRANSACTION_MAX_BYTES,
    TRANSACTION_MAX_ITEMS,
    item_size,
)
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
from runtime.states import (
    TERMINAL_TYPES,
    Cancelled,
    Cancelling,
    Pending,
    Running,
    State,
    StateType,
    utcnow,
)
from runtime.stores.dynamo import (
    ConditionFailed,
    Dynamo,
    Item,
    TransactionFailed,
    epoch,
    iso,
)
from runtime.stores.held import HeldItems
from runtime.stores.paging import SCAN_BUDGET, Listing, batch_get, read_page

RunKind = Literal["flow_run", "task_run"]
R = TypeVar("R", FlowRun, TaskRun)

IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1b5a8e-4c1d-4d7e-9a55-2a1f8f0c3b7d")
"""Namespace of run ids derived from idempotency keys (uuid5)."""

MAX_TRANSITION_ATTEMPTS = 8
MAX_HISTORY = 100
"""Most states kept per run item: the first one and the latest (see :func:`fit_history`)."""

MAX_CONFLICT_ATTEMPTS = 5
"""Tries of a record transaction that DynamoDB cancelled for a concurrent write."""

SHARDS: dict[str, int] = {"flow_run": 4, "task_run": 8}
"""Index partitions per kind (``by_kind``, and ``by_state`` for flow runs): a run's shard
comes from its id, so writes of an installation spread over this many partitions."""

STATE_ATTRIBUTES = ("state_type", "state_name", "kind_state", "state_timestamp", "expires_at")
"""The item attributes a transition rewrites besides the document and the history."""


def shard_of(kind: str, run_id: str) -> int:
    """The index shard of a run: a stable hash of its id, modulo the kind's shard count."""
    return zlib.crc32(run_id.encode("utf-8", errors="surrogatepass")) % SHARDS[kind]


def kind_shards(kind: str) -> tuple[str, ...]:
    """Every ``by_kind`` partition of ``kind`` (``task_run#0`` ...)."""
    return tuple(f"{kind}#{n}" for n in range(SHARDS[kind]))


def state_shards(kind: str, state_type: StateType) -> tuple[str, ...]:
    """Every ``by_state`` partition of ``kind`` in ``state_type`` (``flow_run#RUNNING#0`` ...)."""
    return tuple(f"{kind}#{state_type.value}#{n}" for n in range(SHARDS[kind]))


CONFLICT_BACKOFF = Backoff(base=0.02, cap=0.5)
"""The wait before a cancelled record transaction is sent again."""


def idempotency_scope(request: RunCreateBase) -> str:
    """What an idempotency key is scoped to (ids never collide across scopes).

    Flow runs: their deployment when they have one, else their flow. Task runs: their
    flow run (none for a standalone task) and task key.
    """
    if isinstance(request, FlowRunCreate):
        if request.deployment_id:
            return f"deployment:{request.deployment_id}"
        return f"flow:{request.flow_name}"
    assert isinstance(request, TaskRunCreate)
    return f"flow_run:{request.flow_run_id or ''}/task:{request.task_key}"


def run_id_for_key(kind: RunKind, scope: str, idempotency_key: str) -> str:
    """The deterministic run id for a key in a scope: the same key, the same run."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{kind}:{scope}:{idempotency_key}"))


def request_fingerprint(request: RunCreateBase | Any) -> str:
    """A stable hash of a creation request: what "the same request" means for a key.

    The request as the caller sent it, defaults filled, as canonical JSON: every
    field except ``id`` and ``idempotency_key``, and except the initial state's
    ``timestamp`` (a default the client library fills with the time of the call).
    """
    data = request.model_dump(mode="json", exclude={"id", "idempotency_key"})
    if isinstance(data.get("state"), dict):
        data["state"].pop("timestamp", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _state_json(state: State) -> str:
    return state.model_dump_json(exclude_defaults=True)


def history_entry(state: State) -> str:
    """A state as its history keeps it: JSON, without an inline result value.

    Only the run's current state (in ``doc``) holds an inline result; the history
    keeps its reference's serializer and size, so a result is never stored twice.
    """
    ref = state.details.result
    if ref is not None and ref.inline is not None:
        details = state.details.model_copy(
            update={"result": ref.model_copy(update={"inline": None})}
        )
        state = state.model_copy(update={"details": details})
    return _state_json(state)


def fit_history(entries: list[str], budget: int) -> tuple[list[str], int] | None:
    """The entries a run item can keep in ``budget`` bytes, oldest first, and how many not.

    The latest (the current state) always; then the first; then as many of the most
    recent as fit, at most MAX_HISTORY in all. None when not even the latest fits.
    """
    if not entries:
        return [], 0
    costs = [1 + len(e.encode()) for e in entries]
    used = 3  # a list's own overhead
    last = len(entries) - 1
    if used + costs[last] > budget:
        return None
    used += costs[last]
    keep = {last}
    if last > 0 and used + costs[0] <= budget:
        used += costs[0]
        keep.add(0)
    for i in range(last - 1, 0, -1):
        if len(keep) >= MAX_HISTORY or used + costs[i] > budget:
            break
        used += costs[i]
        keep.add(i)
    kept = [entries[i] for i in sorted(keep)]
    return kept, len(entries) - len(kept)


def _doc_state(item: Item) -> Any:
    """The current state stored in an item's document (what makes two snapshots the same)."""
    return json.loads(item.get("doc") or "{}").get("state")


def _too_large(run: RunBase, size: int) -> ItemTooLarge:
    label = "flow run" if isinstance(run, FlowRun) else "task run"
    return ItemTooLarge(
        f"{label} {run.id} would be {size} bytes with its current state alone, more than "
        f"the {ITEM_BUDGET_BYTES} a run item may hold (DynamoDB's limit is 400 KB): "
        "shrink its parameters, state details or inline result",
        id=run.id,
        size=size,
        limit=ITEM_BUDGET_BYTES,
    )


def _common_match(run: FlowRun | TaskRun, flt: FlowRunFilter | TaskRunFilter) -> bool:
    """The filters flow-run and task-run listings share: states, tags, creation window."""
    return (
        (not flt.state_types or run.state.type in flt.state_types)
        and (not flt.state_names or run.state.name in flt.state_names)
        and all(tag in run.tags for tag in flt.tags_all or [])
        and (flt.created_after is None or run.created >= flt.created_after)
        and (flt.created_before is None or run.created <= flt.created_before)
    )


class RunStore:
    """Every operation on flow runs and task runs."""

    def __init__(
        self, db: Dynamo, table: TableSpec, *, retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        if retention_days < 1:
            raise InvalidInput("retention_days must be at least 1", field="retention_days")
        self.db = db
        self.table = table
        self.retention_days = retention_days
        self.held = HeldItems()
        """Flow-run items as this store last wrote them (see :mod:`runtime.stores.held`)."""

    # ------------------------------------------------------------------ items

    @staticmethod
    def to_item(
        run: FlowRun | TaskRun,
        history: list[State] | None = None,
        *,
        entries: list[str] | None = None,
        dropped: int = 0,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> Item:
        """The DynamoDB item for a run, sized to fit (``history`` defaults to its state).

        The document leaves out fields at their defaults; the other attributes are
        the keys of the indexes the run belongs to and what conditions read (see
        docs/data-model.md). A run in a final state gets ``expires_at``, its state's
        time plus ``retention_days`` (DynamoDB's TTL); a run still going has none.
        The history (``entries`` when already JSON) is fitted in what the item
        budget leaves after the document (:func:`fit_history`); ``history_dropped``
        counts the states left out, ``dropped`` earlier ones included. ItemTooLarge
        when even the run with its current state cannot fit.
        """
        shard = shard_of(run.kind, run.id)
        item: Item = {
            "id": run.id,
            "kind": run.kind,
            "doc": run.model_dump_json(exclude_defaults=True),
            "state_version": run.state_version,
            "created": iso(run.created),
            "kind_shard": f"{run.kind}#{shard}",
        }
        if isinstance(run, FlowRun):
            # what conditions and the engine's cancellation check read of a flow run
            item.update(
                state_type=run.state.type.value,
                state_name=run.state.name,
                kind_state=f"{run.kind}#{run.state.type.value}#{shard}",
                state_timestamp=iso(run.state.timestamp),
                flow_name=run.flow_name,
                parent_id=run.parent_flow_run_id,
                deployment_id=run.deployment_id,
            )
            # the claim's and the queue's fields, read by conditions and the sweep
            if run.worker_id is not None:
                item["worker_id"] = run.worker_id
            if run.lease_id is not None:
                item["lease_id"] = run.lease_id
            if run.heartbeat_at is not None:
                item["heartbeat_at"] = run.heartbeat_at.timestamp()
            if run.enqueued_at is not None:
                item["enqueued_at"] = run.enqueued_at.timestamp()
            if run.work_pool_name is not None:
                item["work_pool_name"] = run.work_pool_name
        else:
            item.update(parent_id=run.flow_run_id)
        if run.state.type in TERMINAL_TYPES:
            item["expires_at"] = epoch(run.state.timestamp + timedelta(days=retention_days))
        if entries is None:
            entries = [history_entry(s) for s in (history or [run.state])]
        # room for the two history attributes' names and the dropped count
        base = item_size(item) + len("history") + len("history_dropped") + 16
        # Half of what is left: an UpdateItem that replaces the history holds the old
        # and the new one at once in moto's size check (real DynamoDB counts only the
        # result), so a transition must fit with both.
        fitted = fit_history(entries, (ITEM_BUDGET_BYTES - base) // 2)
        if fitted is None:
            raise _too_large(run, base + len(entries[-1].encode()))
        item["history"], newly_dropped = fitted
        if dropped + newly_dropped:
            item["history_dropped"] = dropped + newly_dropped
        return item

    def write_task_run_records(
        self, records: list[tuple[TaskRun, list[State]]], *, guard: bool = False
    ) -> int:
        """Store task-run snapshots written by an engine (each the run's latest state).

        Each item is sized first (ItemTooLarge before anything is written). The
        engine's own process writes them with ``BatchWriteItem`` (no conditions,
        cheapest). With ``guard`` (records that came over the API) each put is
        conditioned, in transactions cut by count and bytes, so that a record only
        creates a task run or replaces the same task run of the same flow run with a
        strictly newer ``state_version``; its flow run must exist and not be final.
        Conflict names every refused record and why; an exact replay of what is
        stored counts as written. A transaction DynamoDB keeps cancelling for
        concurrent writes is TransactionConflict.
        """
        items = [
            self.to_item(run, history, retention_days=self.retention_days)
            for run, history in records
        ]
        if not guard:
            for start in range(0, len(items), BATCH_WRITE_MAX_ITEMS):
                self.db.batch_write(self.table.name, items[start : start + BATCH_WRITE_MAX_ITEMS])
            return len(items)
        for chunk in self._transaction_chunks(items):
            self._write_guarded(chunk)
        return len(items)

    @staticmethod
    def _transaction_chunks(items: list[Item]) -> Iterator[list[Item]]:
        """Items in groups one transaction takes: their puts plus one check per flow run."""
        chunk: list[Item] = []
        parents: set[str] = set()
        size = 0
        for item in items:
            parent = item.get("parent_id")
            extra_ops = 1 + (1 if parent and parent not in parents else 0)
            weight = item_size(item)
            ops = len(chunk) + len(parents)
            if chunk and (
                ops + extra_ops > TRANSACTION_MAX_ITEMS or size + weight > TRANSACTION_MAX_BYTES
            ):
                yield chunk
                chunk, parents, size = [], set(), 0
            chunk.append(item)
            size += weight
            if parent:
                parents.add(parent)
        if chunk:
            yield chunk

    def _write_guarded(self, chunk: list[Item]) -> None:
        """One guarded transaction (see :meth:`write_task_run_records`), retried on conflicts."""
        pending = list(chunk)
        parent_ids = {p for i in pending if (p := i.get("parent_id"))}
        flow_run_ids = [i["id"] for i in pending if i["id"] in parent_ids]
        if flow_run_ids:
            raise Conflict(
                f"record id(s) {', '.join(flow_run_ids)} are flow runs, not task runs",
                ids=flow_run_ids,
            )
        conflicts = 0
        while pending:
            parents = sorted({p for i in pending if (p := i.get("parent_id"))})
            ops: list[dict[str, Any]] = [self._guarded_put(i) for i in pending]
            ops += [self._open_flow_run_check(p) for p in parents]
            try:
                self.db.transact(ops)
                return
            except TransactionFailed as failed:
                reasons = failed.reasons + ["None"] * (len(ops) - len(failed.reasons))
                olds = failed.items + [None] * (len(ops) - len(failed.items))
            if "ConditionalCheckFailed" not in reasons:
                if "TransactionConflict" in reasons and conflicts + 1 < MAX_CONFLICT_ATTEMPTS:
                    CONFLICT_BACKOFF.sleep(conflicts, sleep=time.sleep)
                    conflicts += 1
                    continue
                ids = [i["id"] for i in pending]
                raise TransactionConflict(
                    "the task-run records conflicted with concurrent writes to the same runs "
                    f"({', '.join(reasons)}), {conflicts + 1} time(s); nothing of this batch "
                    "was written: send it again",
                    ids=ids,
                    reasons=reasons,
                ) from None
            problems: list[str] = []
            replays: set[str] = set()
            for item, code, old in zip(pending, reasons, olds, strict=False):
                if code == "ConditionalCheckFailed":
                    why = self._refusal(item, old)
                    if why is None:
                        replays.add(item["id"])
                    else:
                        problems.append(why)
            for parent, code, old in zip(
                parents, reasons[len(pending) :], olds[len(pending) :], strict=False
            ):
                if code == "ConditionalCheckFailed":
                    problems.append(self._closed_parent(parent, old))
            if problems:
                bad = [i["id"] for i in pending if i["id"] not in replays]
                raise Conflict(
                    "task-run records refused, nothing of this batch was written: "
                    + "; ".join(problems),
                    ids=bad,
                    problems=problems,
                ) from None
            pending = [i for i in pending if i["id"] not in replays]

    def _guarded_put(self, item: Item) -> dict[str, Any]:
        values: dict[str, Any] = {":k": "task_run", ":v": item["state_version"]}
        if item.get("parent_id"):
            same_parent = "parent_id = :p"
            values[":p"] = item["parent_id"]
        else:
            same_parent = "attribute_not_exists(parent_id)"
        return {
            "Put": {
                "TableName": self.table.name,
                "Item": item,
                "ConditionExpression": (
                    f"attribute_not_exists(id) OR (kind = :k AND {same_parent} "
                    "AND state_version < :v)"
                ),
                "ExpressionAttributeValues": values,
            }
        }

    def _open_flow_run_check(self, flow_run_id: str) -> dict[str, Any]:
        values: dict[str, Any] = {":fr": "flow_run"}
        names = []
        for i, st in enumerate(sorted(TERMINAL_TYPES)):
            values[f":t{i}"] = st.value
            names.append(f":t{i}")
        return {
            "ConditionCheck": {
                "TableName": self.table.name,
                "Key": {"id": flow_run_id},
                "ConditionExpression": f"kind = :fr AND NOT (state_type IN ({', '.join(names)}))",
                "ExpressionAttributeValues": values,
            }
        }

    @staticmethod
    def _refusal(item: Item, old: Item | None) -> str | None:
        """Why a record's put was refused (None: it is exactly what is stored, a replay)."""
        run_id = item["id"]
        if old is None:
            return f"task run {run_id} changed meanwhile"
        if old.get("kind") != "task_run":
            return f"{run_id} is a flow run, not a task run"
        if old.get("parent_id") != item.get("parent_id"):
            owner = old.get("parent_id") or "no flow run"
            return (
                f"task run {run_id} belongs to flow run {owner}, "
                f"not {item.get('parent_id') or 'none'}"
            )
        if old.get("state_version") == item["state_version"] and _doc_state(old) == _doc_state(
            item
        ):
            return None
        return (
            f"task run {run_id} is stored at state_version {old.get('state_version')}; "
            f"a record must be newer (it has {item['state_version']})"
        )

    @staticmethod
    def _closed_parent(flow_run_id: str, old: Item | None) -> str:
        if old is None or old.get("kind") != "flow_run":
            return f"flow run {flow_run_id} does not exist"
        return (
            f"flow run {flow_run_id} is {old.get('state_name')} ({old.get('state_type')}): "
            "a finished flow run takes no more task-run records"
        )

    @staticmethod
    def from_item(item: Item) -> FlowRun | TaskRun:
        """The run stored in an item.

        A flow run's ``heartbeat_at`` and ``enqueued_at`` are item attributes
        written without rewriting the document (:meth:`heartbeat`,
        :meth:`mark_enqueued`): the attribute wins over the document's copy.
        """
        if item["kind"] == "flow_run":
            run = FlowRun.model_validate_json(item["doc"])
            for name in ("heartbeat_at", "enqueued_at"):
                value = item.get(name)
                if value is not None:
                    setattr(run, name, datetime.fromtimestamp(float(value), UTC))
            return run
        return TaskRun.model_validate_json(item["doc"])

    # ------------------------------------------------------------------ create

    def create_flow_run(self, request: FlowRunCreate) -> FlowRun:
        """Create a flow run; with an idempotency key, a repeat returns the first run."""
        return self.create_flow_run_once(request)[0]

    def create_flow_run_once(
        self, request: FlowRunCreate, *, fingerprint: str | None = None
    ) -> tuple[FlowRun, bool]:
        """:meth:`create_flow_run`, and whether this call created it (False: key repeat).

        A repeated key returns the first run when the request is the same
        (:func:`request_fingerprint`; ``fingerprint`` when given, e.g. that of a
        deployment-run request) and is a Conflict naming that run otherwise.
        """
        fields = request.model_dump(exclude={"id", "name", "state", "idempotency_key"})
        run_id, state = self._identity("flow_run", request)
        run = FlowRun(
            id=run_id,
            name=request.name or generate_name(),
            idempotency_key=request.idempotency_key,
            **fields,
        )
        return self._insert(run, state, fingerprint or request_fingerprint(request))

    def create_task_run(self, request: TaskRunCreate) -> TaskRun:
        """Create a task run; with an idempotency key, a repeat returns the first run."""
        return self.create_task_run_once(request)[0]

    def create_task_run_once(self, request: TaskRunCreate) -> tuple[TaskRun, bool]:
        """:meth:`create_task_run`, and whether this call created it (False: key repeat).

        A repeated key with a different request is a Conflict naming the first run.
        """
        fields = request.model_dump(exclude={"id", "name", "state", "idempotency_key"})
        run_id, state = self._identity("task_run", request)
        run = TaskRun(
            id=run_id,
            name=request.name or f"{request.task_key}-{run_id[:8]}",
            idempotency_key=request.idempotency_key,
            **fields,
        )
        return self._insert(run, state, request_fingerprint(request))

    @staticmethod
    def _identity(kind: RunKind, request: RunCreateBase) -> tuple[str, State]:
        if request.idempotency_key is not None:
            derived = run_id_for_key(kind, idempotency_scope(request), request.idempotency_key)
            if request.id is not None and request.id != derived:
                raise InvalidInput(
                    "give either id or idempotency_key, not both", field="idempotency_key"
                )
            run_id = derived
        else:
            run_id = request.id or new_id()
        return run_id, (request.state or Pending()).model_copy(deep=True)

    def _insert(self, run: R, state: State, fingerprint: str) -> tuple[R, bool]:
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
        item = self.to_item(run, retention_days=self.retention_days)
        if run.idempotency_key is not None:
            item["request_hash"] = fingerprint
        try:
            self.db.put(self.table.name, item, condition="attribute_not_exists(id)")
        except ConditionFailed as lost:
            if run.idempotency_key is None:
                raise AlreadyExists(f"a run with id {run.id} already exists", id=run.id) from None
            current = lost.current or self.db.get(self.table.name, {"id": run.id})
            if current is None:
                raise Conflict(
                    f"run {run.id} was deleted meanwhile; try again", id=run.id
                ) from None
            existing = self.from_item(current)
            if not isinstance(existing, type(run)):
                raise Conflict(f"idempotency key is used by a {existing.kind}") from None
            stored_hash = current.get("request_hash")
            if stored_hash is not None and stored_hash != fingerprint:
                label = "flow run" if run.kind == "flow_run" else "task run"
                raise Conflict(
                    f"idempotency key {run.idempotency_key!r} already created {label} "
                    f"{existing.id} from a different request; send the same request to get "
                    "that run, or use another key",
                    id=existing.id,
                    idempotency_key=run.idempotency_key,
                ) from None
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
        """The run's states, oldest first (NotFound unless a run of ``kind``).

        Every state it has had, unless the item's byte budget dropped some between the
        first and the latest ones (the item's ``history_dropped`` counts them).
        """
        item = self.db.get(self.table.name, {"id": run_id}, projection="history, kind", names=None)
        if item is None or (kind is not None and item.get("kind") != kind):
            label = {"flow_run": "flow run", "task_run": "task run"}.get(kind or "", "run")
            raise NotFound(f"{label} {run_id} not found", id=run_id)
        return [State.model_validate_json(s) for s in item.get("history", [])]

    # ------------------------------------------------------------------ list

    def list_flow_runs(
        self,
        flt: FlowRunFilter | None = None,
        *,
        limit: int = 200,
        cursor: str | None = None,
        budget: int = SCAN_BUDGET,
    ) -> Page[FlowRun]:
        """Flow runs matching ``flt``, newest first, ``limit`` per page.

        At most ``budget`` index entries are examined per call: a selective filter
        may return a short (even empty) page with a ``next_cursor`` to go on from.
        """
        flt = flt or FlowRunFilter()
        index, partitions = "by_kind", kind_shards("flow_run")
        if flt.parent_flow_run_id:
            index, partitions = "by_parent", (flt.parent_flow_run_id,)
        elif flt.deployment_id:
            index, partitions = "by_deployment", (flt.deployment_id,)
        elif flt.flow_name:
            index, partitions = "by_flow", (flt.flow_name,)
        elif flt.state_types and len(flt.state_types) == 1:
            index, partitions = "by_state", state_shards("flow_run", flt.state_types[0])

        def matches(run: FlowRun | TaskRun) -> bool:
            return (
                isinstance(run, FlowRun)
                and _common_match(run, flt)
                and all(
                    getattr(flt, attr) is None or getattr(run, attr) == getattr(flt, attr)
                    for attr in ("flow_name", "deployment_id", "work_pool_name")
                )
                and (
                    flt.parent_flow_run_id is None
                    or run.parent_flow_run_id == flt.parent_flow_run_id
                )
            )

        page = self._list(index, partitions, flt, matches, limit, cursor, budget)
        return Page[FlowRun](
            items=[r for r in page.items if isinstance(r, FlowRun)],
            next_cursor=page.next_cursor,
        )

    def list_task_runs(
        self,
        flt: TaskRunFilter | None = None,
        *,
        limit: int = 200,
        cursor: str | None = None,
        budget: int = SCAN_BUDGET,
    ) -> Page[TaskRun]:
        """Task runs matching ``flt``, newest first, ``limit`` per page (see list_flow_runs)."""
        flt = flt or TaskRunFilter()
        index, partitions = "by_kind", kind_shards("task_run")
        if flt.flow_run_id:
            index, partitions = "by_parent", (flt.flow_run_id,)

        def matches(run: FlowRun | TaskRun) -> bool:
            return (
                isinstance(run, TaskRun)
                and _common_match(run, flt)
                and (flt.task_key is None or run.task_key == flt.task_key)
                and (flt.flow_run_id is None or run.flow_run_id == flt.flow_run_id)
            )

        page = self._list(index, partitions, flt, matches, limit, cursor, budget)
        return Page[TaskRun](
            items=[r for r in page.items if isinstance(r, TaskRun)],
            next_cursor=page.next_cursor,
        )

    def _list(
        self,
        index: str,
        partitions: tuple[str, ...],
        flt: FlowRunFilter | TaskRunFilter,
        matches: Any,
        limit: int,
        cursor: str | None,
        budget: int,
    ) -> Page[FlowRun | TaskRun]:
        """One page through ``runtime.stores.paging``: keys from the index, runs fetched.

        The indexes project keys only; the runs a page of keys names are read with
        ``BatchGetItem`` and filtered here. On the indexes sorted by ``created`` the
        time window is part of the key condition.
        """
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        condition = None
        after = iso(flt.created_after) if flt.created_after else None
        before = iso(flt.created_before) if flt.created_before else None
        if index != "by_state" and (after or before):
            names["#created"] = "created"
            if after and before:
                condition = "#created BETWEEN :after AND :before"
                values.update({":after": after, ":before": before})
            elif after:
                condition, values[":after"] = "#created >= :after", after
            else:
                condition, values[":before"] = "#created <= :before", before
        listing = Listing(
            self.table,
            index,
            partitions,
            forward=False,
            range_condition=condition,
            names=names,
            values=values,
        )
        page = read_page(
            self.db,
            listing,
            limit=limit,
            cursor=cursor,
            fetch=self._fetch_runs,
            matches=matches,
            budget=budget,
        )
        return Page[FlowRun | TaskRun](items=page.items, next_cursor=page.next_cursor)

    def _fetch_runs(self, entries: list[Item]) -> Sequence[FlowRun | TaskRun | None]:
        """The runs index entries name (None where deleted since), in their order."""
        items = batch_get(
            self.db,
            self.table.name,
            [{"id": e["id"]} for e in entries],
            ("id",),
            projection="id, kind, #d, heartbeat_at, enqueued_at",
            names={"#d": "doc"},
        )
        return [None if i is None else self.from_item(i) for i in items]

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
        expected_version: int | None = ...,
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
        expected_version: int | None = ...,
    ) -> OrchestrationResult: ...

    def set_state(
        self,
        kind: RunKind,
        run_id: str,
        state: State,
        *,
        force: bool = False,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> OrchestrationResult:
        """Propose ``state`` for a run: the rules decide, one conditional write persists it.

        ``expected_version`` is the ``state_version`` the caller holds (the engine
        knows the version of every state it wrote): when this store wrote that very
        version itself, the rules run on what it wrote and the conditional write is
        the only request. Otherwise the run is read first. Either way the write is
        conditioned on the version the rules saw; a lost race returns the run as it
        is now (``ALL_OLD``) and the rules run again on it, so a lost race comes
        back as a rejection naming the current state.
        """
        return self._transition(kind, run_id, lambda run: state, force, now, expected_version)

    def claim_flow_run(
        self,
        run_id: str,
        worker_id: str,
        *,
        lease_id: str | None = None,
        now: datetime | None = None,
    ) -> OrchestrationResult:
        """Propose Running for a flow run on behalf of ``worker_id``: the claim's one write.

        The rules decide as for any transition (PENDING, or a SCHEDULED run that is
        due, may start; RUNNING -> RUNNING is a second claim, rejected; final runs
        stay final). An accepted claim writes, in the same conditional ``UpdateItem``,
        the run's ``worker_id``, its first ``heartbeat_at`` (``now``) and ``lease_id``
        (the concurrency lease the caller took for it, or none). Of any number of
        concurrent claims exactly one is accepted.
        """
        moment = now or utcnow()

        def annotate(run: FlowRun | TaskRun) -> None:
            assert isinstance(run, FlowRun)
            run.worker_id = worker_id
            run.heartbeat_at = moment
            run.lease_id = lease_id

        return self._transition(
            "flow_run",
            run_id,
            lambda run: Running(),
            False,
            moment,
            None,
            annotate=annotate,
            extra_attributes=("worker_id", "heartbeat_at", "lease_id"),
        )

    def heartbeat(self, run_id: str, worker_id: str, *, now: datetime | None = None) -> bool:
        """Record that ``worker_id`` still runs the flow run: one conditional ``UpdateItem``.

        Writes the item's numeric ``heartbeat_at`` (the document is not rewritten,
        the version not bumped). Conditioned on the run being this worker's
        (``worker_id``) and still in its hands: RUNNING, or CANCELLING (the worker is
        stopping it) or PAUSED (waiting in its process). False when not: the run was
        handed back, crashed by the sweep, claimed by another worker, or it ended.
        """
        moment = now or utcnow()
        try:
            self.db.update(
                self.table.name,
                {"id": run_id},
                "SET heartbeat_at = :t",
                condition="worker_id = :w AND state_type IN (:r, :c, :p)",
                values={
                    ":t": moment.timestamp(),
                    ":w": worker_id,
                    ":r": StateType.RUNNING.value,
                    ":c": StateType.CANCELLING.value,
                    ":p": StateType.PAUSED.value,
                },
                return_new=False,
            )
        except ConditionFailed:
            return False
        self.held.forget(run_id)
        return True

    def mark_enqueued(
        self,
        run_id: str,
        state_version: int,
        *,
        now: datetime | None = None,
        unless_since: datetime | None = None,
    ) -> bool:
        """Record that the flow run was sent to its pool's queue (``enqueued_at``).

        Conditioned on the run still being at ``state_version`` (the state the
        sender saw), and with ``unless_since`` on it not being marked at or after
        that time already (a reservation: of two senders, one wins). False when
        the condition failed.
        """
        moment = now or utcnow()
        condition = "state_version = :v"
        values: dict[str, Any] = {":t": moment.timestamp(), ":v": state_version}
        if unless_since is not None:
            condition += " AND (attribute_not_exists(enqueued_at) OR enqueued_at < :since)"
            values[":since"] = unless_since.timestamp()
        try:
            self.db.update(
                self.table.name,
                {"id": run_id},
                "SET enqueued_at = :t",
                condition=condition,
                values=values,
                return_new=False,
            )
        except ConditionFailed:
            return False
        self.held.forget(run_id)
        return True

    def cancel_flow_run(self, run_id: str, *, now: datetime | None = None) -> OrchestrationResult:
        """Cancel a flow run through the rules: Cancelled if it has not started, else Cancelling.

        SCHEDULED, PENDING and PAUSED runs (no process to stop, or one waiting to
        resume) are proposed Cancelled; RUNNING runs Cancelling, so their worker stops
        them (a CANCELLING run too: the rules refuse it, as only its worker may end it).
        Final runs are proposed Cancelled and the rules refuse that. The target is chosen
        again on every attempt, so a run claimed in between gets Cancelling, never
        Cancelled under its process.
        """

        def target(run: FlowRun | TaskRun) -> State:
            if run.state.type in (StateType.RUNNING, StateType.CANCELLING):
                return Cancelling(message="Cancellation requested.")
            return Cancelled(message="Cancelled on request.")

        return self._transition("flow_run", run_id, target, False, now, None)

    def start_flow_run(
        self, request: FlowRunCreate, *, now: datetime | None = None
    ) -> tuple[FlowRun, bool]:
        """Create a flow run already RUNNING when the rules let a new run start at once.

        One conditional ``PutItem`` instead of a creation and a transition: the run
        is built PENDING exactly as :meth:`create_flow_run` builds it, the flow
        policy decides PENDING -> RUNNING on it, and the item is written with both
        states in its history (``state_version`` 1). True says it started. A run that
        may not skip its claim is created as requested instead (False): a deployment
        run (its worker claims it), a request with another initial state or with an
        idempotency key (a repeat must return the first run as it is), or a run the
        rules do not let start.
        """
        eligible = (
            request.deployment_id is None
            and request.idempotency_key is None
            and (request.state is None or request.state.type is StateType.PENDING)
        )
        if not eligible:
            return self.create_flow_run(request), False
        moment = now or utcnow()
        fields = request.model_dump(exclude={"id", "name", "state", "idempotency_key"})
        run_id, pending = self._identity("flow_run", request)
        run = FlowRun(id=run_id, name=request.name or generate_name(), **fields)
        run.state = pending
        run.created = run.updated = moment
        _, started = apply_transition(run, Running(), now=moment)
        if started is None:
            return self.create_flow_run(request), False
        item = self.to_item(started, [pending, started.state])
        try:
            self.db.put(self.table.name, item, condition="attribute_not_exists(id)")
        except ConditionFailed:
            raise AlreadyExists(f"a run with id {run_id} already exists", id=run_id) from None
        self.held.keep(item)
        return started, True

    def _transition(
        self,
        kind: RunKind,
        run_id: str,
        propose: Callable[[FlowRun | TaskRun], State],
        force: bool,
        now: datetime | None,
        expected_version: int | None,
        *,
        annotate: Callable[[FlowRun | TaskRun], None] | None = None,
        extra_attributes: tuple[str, ...] = (),
    ) -> OrchestrationResult:
        """The one transition loop: decide on the run as known, write, re-decide on a loss.

        The run as known is the snapshot this store wrote at ``expected_version``
        (no read), else a consistent read. ``propose`` picks the state to propose
        from the run (it may depend on the run's state, as a cancellation does).
        ``annotate`` changes other fields of an accepted new run before it is
        written; ``extra_attributes`` names the item attributes (besides the
        state's) the write then sets from it, or removes when it has none.
        """
        item = self.held.get(run_id, expected_version) if expected_version is not None else None
        if item is None:
            item = self.db.get(self.table.name, {"id": run_id})
        if item is None or item["kind"] != kind:
            label = "flow run" if kind == "flow_run" else "task run"
            raise NotFound(f"{label} {run_id} not found", id=run_id)
        for _ in range(MAX_TRANSITION_ATTEMPTS):
            run = self.from_item(item)
            result, written, parent_check = self._decide(run, propose(run), force, now)
            if written is None:
                return result
            if annotate is not None:
                annotate(written)
            try:
                new_item = self._write_transition(
                    run,
                    written,
                    item.get("history"),
                    parent_check,
                    int(item.get("history_dropped", 0)),
                    extra_attributes,
                )
            except ConditionFailed as lost:
                self.held.forget(run_id)
                item = lost.current or self.db.get(self.table.name, {"id": run_id})
                if item is None:
                    raise NotFound(f"run {run_id} was deleted", id=run_id) from None
                continue
            self.held.keep(new_item)
            return result
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
        history_dropped: int = 0,
        extra_attributes: tuple[str, ...] = (),
    ) -> Item:
        """Persist an accepted transition: one UpdateItem conditioned on ``state_version``.

        The new state is appended to the history, which is then fitted to the item's
        budget (the first state and as many recent ones as fit, at most MAX_HISTORY;
        ``history_dropped`` counts the others): an item stays under 400 KB. With
        ``parent_check`` the update is a transaction that also checks the parent flow
        run's version, so a task never starts on a flow-run state that just changed.
        Returns the run's item as written.
        """
        entries = [*(history if history is not None else []), history_entry(new.state)]
        item = self.to_item(
            new, entries=entries, dropped=history_dropped, retention_days=self.retention_days
        )
        values: dict[str, Any] = {
            ":doc": item["doc"],
            ":nv": new.state_version,
            ":v": old.state_version,
            ":h": item["history"],
            ":hd": item.get("history_dropped", 0),
        }
        # the state's copies the item has (kind_state: flow runs; expires_at: final runs)
        written = [a for a in (*STATE_ATTRIBUTES, *extra_attributes) if a in item]
        values.update({f":{a}": item[a] for a in written})
        update = "SET #doc = :doc, state_version = :nv, history = :h, history_dropped = :hd"
        update += "".join(f", {a} = :{a}" for a in written)
        removed = [a for a in ("expires_at", *extra_attributes) if a not in item]
        if removed:  # expires_at: back from a final state, it must not expire
            update += " REMOVE " + ", ".join(removed)
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
            return item
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
        return item

    def delete_run(self, run_id: str) -> None:
        """Delete a run record (no-op when absent)."""
        self.held.forget(run_id)
        self.db.delete(self.table.name, {"id": run_id})


def runs_as_json(runs: list[RunBase]) -> str:
    """A JSON array of runs (for CLI and debugging output)."""
    return json.dumps([json.loads(r.model_dump_json()) for r in runs])
