"""The maintenance sweep: what keeps runs from getting stuck when the parties that own them die.

One call, :func:`sweep`, does every maintenance action once and returns a
:class:`SweepReport` counting what it changed. In AWS an EventBridge rate rule
runs it (``handlers/maintenance.py``); locally ``stratoflow dev`` runs it in a
loop (:func:`run_sweep_loop`). The actions, in this order:

* **Crashed workers.** A RUNNING (or CANCELLING) flow run whose worker stopped
  heartbeating (its ``heartbeat_at`` is older than ``heartbeat_timeout_seconds``)
  becomes CRASHED with a message saying so (a CANCELLING one becomes CANCELLED:
  nobody is left to stop it), its leases are released, and when its flow has
  retries left it goes on to AwaitingRetry and back on its pool's queue
  (:func:`runtime.services.dispatch.enqueue_flow_run`). Prefect's zombie-run
  automation (docs/v3/advanced/detect-zombie-flows.mdx) marks such runs Crashed and
  does not retry them; Stratoflow retries them when the flow asked for retries. Runs
  without a heartbeat (flows called in a process, not by a worker) are never touched.
* **Due runs.** Pool runs that were more than 15 minutes ahead when submitted (SQS
  delays stop there) are sent once they come within 15 minutes, and PENDING runs
  whose sender died before sending are sent
  (:func:`runtime.services.dispatch.enqueue_due_runs`).
* **Late runs.** A run still named Scheduled ``late_after_seconds`` (15 s, as
  Prefect's ``PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS``) after its start
  time becomes Late, keeping its scheduled time (Prefect's MarkLateRuns,
  src/prefect/server/services/late_runs.py). A run already in its queue stays
  marked as sent (no second message).
* **Expired leases** are reclaimed (:meth:`runtime.stores.ConcurrencyStore.sweep`).
* **Dead letters.** A run whose queue message SQS moved to the pool's dead-letter
  queue without the run ever starting becomes CRASHED naming the reason; the
  message is deleted.

Every change is one conditional write on the run as the sweep read it (its
``state_version``, and for a crash that its heartbeat is still old), so two sweeps
at once, or a sweep racing a worker's heartbeat, change each run at most once.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from runtime.models import FlowRun
from runtime.orchestration.policies import retry_delay
from runtime.services import worker_runs
from runtime.settings import get_settings
from runtime.states import AwaitingRetry, Crashed, Late, State, StateType, utcnow
from runtime.stores.dynamo import Item, iso
from runtime.stores.paging import batch_get
from runtime.stores.queues import ReceivedMessage
from runtime.stores.runs import state_shards

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "SweepReport",
    "crash_stale_runs",
    "mark_late_runs",
    "run_sweep_loop",
    "sweep",
]

HEARTBEAT_ATTRIBUTE = "heartbeat_at"
"""The run item's numeric heartbeat (epoch seconds) a worker refreshes while its run executes."""


@dataclass
class SweepReport:
    """What one sweep changed, per action (every count is of changes *this* sweep made)."""

    crashed: int = 0
    """Running runs whose heartbeat expired, now Crashed."""
    cancelled: int = 0
    """Cancelling runs whose heartbeat expired, now Cancelled (nobody is left to stop them)."""
    retried: int = 0
    """Of the crashed runs, those put back to AwaitingRetry (their flow has retries left)."""
    requeued: int = 0
    """Of the retried runs, those sent back to their pool's queue."""
    leases_released: int = 0
    """Leases held by the crashed or cancelled runs, given back."""
    late: int = 0
    """Scheduled runs past their start time by the grace period, now Late."""
    enqueued: int = 0
    """Due Scheduled runs sent to their pool's queue."""
    leases_reclaimed: int = 0
    """Expired leases reclaimed."""
    dead_lettered: int = 0
    """Runs whose queue message reached the pool's dead-letter queue, now Crashed."""
    errors: list[str] = field(default_factory=list)
    """Actions that failed this time (the others still ran; the next sweep tries again)."""

    def as_dict(self) -> dict[str, Any]:
        """The counts (and errors) as plain JSON data."""
        return asdict(self)

    def changed(self) -> int:
        """How many changes this sweep made in all."""
        return sum(v for k, v in self.as_dict().items() if isinstance(v, int))


def _query_state(
    stores: Stores, state_type: StateType, before: datetime | None = None
) -> list[str]:
    """Ids of flow runs in ``state_type`` (``by_state`` index), entered before ``before``."""
    ids: list[str] = []
    for partition in state_shards("flow_run", state_type):
        condition = "kind_state = :p"
        values: dict[str, Any] = {":p": partition}
        if before is not None:
            condition += " AND state_timestamp <= :before"
            values[":before"] = iso(before)
        ids += [
            entry["id"]
            for entry in stores.db.query(
                stores.runs.table.name, index="by_state", key_condition=condition, values=values
            )
        ]
    return ids


def _items(stores: Stores, ids: list[str]) -> Iterator[Item]:
    """The run items of ``ids`` (eventually consistent: every change is conditional anyway)."""
    found = batch_get(stores.db, stores.runs.table.name, [{"id": i} for i in ids], ("id",))
    yield from (item for item in found if item is not None and item.get("kind") == "flow_run")


def _heartbeat(item: Item) -> float | None:
    value = item.get(HEARTBEAT_ATTRIBUTE)
    return float(value) if isinstance(value, int | float) else None


def _retry_state(run: FlowRun, now: datetime, message: str) -> State | None:
    """AwaitingRetry at the retry delay when the flow has retries left (as a failure), else None."""
    if run.run_count > run.empirical_policy.retries:
        return None
    view = SimpleNamespace(
        run=SimpleNamespace(
            run_count=run.run_count,
            retry_delay_seconds=run.empirical_policy.retry_delay_seconds,
            retry_jitter_factor=run.empirical_policy.retry_jitter_factor,
        ),
        jitter_sample=random.random(),
    )
    delay = retry_delay(view)  # type: ignore[arg-type]
    return AwaitingRetry(
        scheduled_time=now + timedelta(seconds=delay),
        message=f"{message} Retry {run.run_count} of {run.empirical_policy.retries}.",
        retry_count=run.run_count,
    )


RequeueFn = Callable[["Stores", FlowRun, datetime], bool]
"""Put a run back on its pool's queue; True when it was sent."""


def requeue_run(stores: Stores, run: FlowRun, now: datetime) -> bool:
    """Send a run awaiting its retry back to its pool's queue (:mod:`runtime.services.dispatch`).

    A run of no pool (a flow called in a process) has no queue: False. A retry due
    more than 15 minutes ahead is left for :func:`runtime.services.dispatch.enqueue_due_runs`.
    """
    from runtime.services.dispatch import enqueue_flow_run, is_queued

    if run.work_pool_name is None:
        return False
    return is_queued(enqueue_flow_run(stores, run, now=now))


def crash_stale_runs(
    stores: Stores,
    report: SweepReport,
    *,
    now: datetime,
    timeout_seconds: float,
    requeue: RequeueFn | None = None,
) -> None:
    """Crash (or cancel) flow runs whose worker stopped heartbeating; retry those that may.

    Each change is conditioned on the run's version and on its heartbeat still being
    older than the cutoff: a heartbeat that lands first, or another sweep, wins.
    """
    requeue = requeue or requeue_run
    cutoff = now - timedelta(seconds=timeout_seconds)
    cutoff_epoch = cutoff.timestamp()
    for state_type in (StateType.RUNNING, StateType.CANCELLING):
        ids = _query_state(stores, state_type, before=cutoff)
        for item in _items(stores, ids):
            beat = _heartbeat(item)
            if beat is None or beat >= cutoff_epoch or item.get("state_type") != state_type.value:
                continue
            run = stores.runs.from_item(item)
            assert isinstance(run, FlowRun)
            age = (now.timestamp() - beat) if beat else timeout_seconds
            message = (
                f"No heartbeat from the run's worker for {age:.0f} s "
                f"(heartbeat timeout {timeout_seconds:g} s): its process is gone."
            )
            ended = worker_runs.crash_stale_run(
                stores, run, message, heartbeat_before=cutoff, now=now
            )
            if ended is None:
                continue  # a heartbeat, the worker or another sweep changed it first
            result, freed = ended
            report.leases_released += freed
            if state_type is StateType.CANCELLING:
                report.cancelled += 1
                continue
            report.crashed += 1
            retry = _retry_state(run, now, message)
            if retry is None:
                continue
            retried = stores.runs.set_state_if_unchanged(
                "flow_run", run.id, retry, expected_version=result.state_version, now=now
            )
            if retried is None or retried.status != "ACCEPT":
                continue
            report.retried += 1
            if requeue(stores, stores.runs.read_flow_run(run.id), now):
                report.requeued += 1


def mark_late_runs(
    stores: Stores, report: SweepReport, *, now: datetime, after_seconds: float
) -> None:
    """Rename Scheduled runs whose start time passed ``after_seconds`` ago to Late.

    Only runs whose state is named Scheduled (not AwaitingRetry, not already Late),
    as Prefect's MarkLateRuns; the state keeps the run's scheduled time.
    """
    from runtime.services.dispatch import is_queued

    cutoff = now - timedelta(seconds=after_seconds)
    for item in _items(stores, _query_state(stores, StateType.SCHEDULED, before=cutoff)):
        if item.get("state_name") != "Scheduled":
            continue
        run = stores.runs.from_item(item)
        assert isinstance(run, FlowRun)
        start = run.next_scheduled_start_time or run.state.details.scheduled_time
        if start is None or start > cutoff:
            continue
        result = stores.runs.set_state_if_unchanged(
            "flow_run",
            run.id,
            Late(
                scheduled_time=start, message=f"Not started {after_seconds:g} s after {iso(start)}."
            ),
            expected_version=run.state_version,
            now=now,
        )
        if result is None or result.status != "ACCEPT":
            continue
        report.late += 1
        if is_queued(run):
            # its message is in the queue already (sent with a delay): renaming the state
            # must not make it look unsent, or the next sweep would send it again
            stores.runs.mark_enqueued(run.id, result.state_version, now=now)


def enqueue_due_runs(stores: Stores, report: SweepReport, *, now: datetime) -> None:
    """Send the pool runs that came within 15 minutes of their start (or whose sender died).

    :func:`runtime.services.dispatch.enqueue_due_runs` decides and sends, once each.
    """
    from runtime.services.dispatch import enqueue_due_runs as send_due

    report.enqueued += len(send_due(stores, now))


#: States in which a run whose message reached the dead-letter queue never started.
UNSTARTED = (StateType.SCHEDULED, StateType.PENDING)


def crash_dead_letters(
    stores: Stores, report: SweepReport, *, now: datetime, max_batches: int = 100
) -> None:
    """Crash the runs whose queue message SQS moved to their pool's dead-letter queue.

    A message lands there after ``pool_max_receive_count`` receives without being
    deleted: every worker that took it died or failed before starting the run (a
    bundle that cannot be loaded, a worker killed at once). A run still SCHEDULED or
    PENDING then becomes CRASHED naming the reason, its leases released; the message
    is deleted. A run in any other state (started, or final) keeps its state and the
    message is just deleted; an unreadable message too. A run that changed while the
    sweep looked keeps its message in the DLQ for the next sweep.
    """
    for pool in _pool_names(stores):
        try:
            _drain_dead_letters(stores, report, pool, now, max_batches)
        except Exception as exc:  # one pool's queue failing must not stop the others
            report.errors.append(f"dead letters of pool {pool!r}: {type(exc).__name__}: {exc}")


def _drain_dead_letters(
    stores: Stores, report: SweepReport, pool: str, now: datetime, max_batches: int
) -> None:
    for _ in range(max_batches):
        messages = stores.queues.receive_dead_letters(pool, max_messages=10, visibility_timeout=60)
        if not messages:
            return
        for message in messages:
            if _settle_dead_letter(stores, report, pool, message, now):
                stores.queues.delete_dead_letter(pool, message.receipt_handle)


def _settle_dead_letter(
    stores: Stores, report: SweepReport, pool: str, message: ReceivedMessage, now: datetime
) -> bool:
    """Crash the message's run when it never started; True when the message may go."""
    from runtime.errors import NotFound

    if message.body is None:
        return True
    try:
        run = stores.runs.read_flow_run(message.body.flow_run_id)
    except NotFound:
        return True
    if run.state.type not in UNSTARTED:
        return True
    reason = (
        f"Its message in work pool {pool!r}'s queue was received {message.receive_count} "
        "times without the run starting, so SQS moved it to the pool's dead-letter queue "
        "(the workers that took it died or could not start it)."
    )
    result = stores.runs.set_state_if_unchanged(
        "flow_run", run.id, Crashed(message=reason), expected_version=run.state_version, now=now
    )
    if result is None:
        return False  # changed meanwhile: look again next time
    if result.status == "ACCEPT":
        report.dead_lettered += 1
        report.leases_released += worker_runs.release_run_leases(stores, run)
    return True


def _pool_names(stores: Stores) -> list[str]:
    names: list[str] = []
    cursor: str | None = None
    while True:
        page = stores.registry.list_work_pools(cursor=cursor)
        names += [pool.name for pool in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return names


def sweep(
    stores: Stores,
    *,
    now: datetime | None = None,
    heartbeat_timeout_seconds: float | None = None,
    late_after_seconds: float | None = None,
) -> SweepReport:
    """Run every maintenance action once; what it changed, per action.

    The timeouts default to the settings (``STRATOFLOW_HEARTBEAT_TIMEOUT_SECONDS``,
    ``STRATOFLOW_LATE_AFTER_SECONDS``). One action failing (say, a throttled
    table) is recorded in ``errors`` and the others still run. Safe to run any
    number of times at once, anywhere.
    """
    moment = now or utcnow()
    settings = get_settings()
    timeout = heartbeat_timeout_seconds
    if timeout is None:
        timeout = settings.heartbeat_timeout_seconds
    after = settings.late_after_seconds if late_after_seconds is None else late_after_seconds
    report = SweepReport()
    actions: list[tuple[str, Callable[[], None]]] = [
        (
            "crash stale runs",
            lambda: crash_stale_runs(stores, report, now=moment, timeout_seconds=timeout),
        ),
        ("enqueue due runs", lambda: enqueue_due_runs(stores, report, now=moment)),
        ("mark late runs", lambda: mark_late_runs(stores, report, now=moment, after_seconds=after)),
        ("reclaim leases", lambda: _reclaim(stores, report, moment)),
        ("dead letters", lambda: crash_dead_letters(stores, report, now=moment)),
    ]
    for name, action in actions:
        try:
            action()
        except Exception as exc:  # one failing action must not stop the others
            report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    return report


def _reclaim(stores: Stores, report: SweepReport, now: datetime) -> None:
    report.leases_reclaimed += stores.concurrency.sweep(now=now)


def run_sweep_loop(
    stores: Stores,
    interval: float,
    stop_event: threading.Event,
    *,
    on_report: Callable[[SweepReport], None] | None = None,
) -> None:
    """Sweep every ``interval`` seconds until ``stop_event`` is set (the local stack's loop).

    ``on_report`` sees each sweep's report (a failed action is in its ``errors``).
    """
    while not stop_event.is_set():
        try:
            report = sweep(stores)
        except Exception as exc:  # never let one sweep end the loop
            report = SweepReport(errors=[f"sweep: {type(exc).__name__}: {exc}"])
        if on_report is not None:
            on_report(report)
        stop_event.wait(interval)
