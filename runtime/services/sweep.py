"""The maintenance sweep: what keeps runs from getting stuck when the parties that own them die.

One call, :func:`sweep`, does every maintenance action once and returns a
:class:`SweepReport` counting what it changed. In AWS an EventBridge rate rule
runs it (``handlers/maintenance.py``); locally ``stratoflow dev`` runs it in a
loop (:func:`run_sweep_loop`). The actions:

* **Crashed workers.** A RUNNING (or CANCELLING) flow run whose worker stopped
  heartbeating (its ``heartbeat_at`` is older than ``heartbeat_timeout_seconds``)
  becomes CRASHED with a message saying so (a CANCELLING one becomes CANCELLED),
  its leases are released, and when its flow has retries left it goes on to
  AwaitingRetry and back on its pool's queue (Prefect's zombie-run automation,
  docs/v3/advanced/detect-zombie-flows.mdx, marks such runs Crashed; Prefect does
  not retry them, Stratoflow does when the flow asked for retries). Runs without
  a heartbeat (flows called in a process, not by a worker) are never touched.
* **Late runs.** A run still named Scheduled this long (``late_after_seconds``,
  15 s as Prefect's ``PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS``) after its
  start time becomes Late (Prefect's MarkLateRuns service,
  src/prefect/server/services/late_runs.py).
* **Expired leases** are reclaimed (:meth:`runtime.stores.ConcurrencyStore.sweep`).

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
from runtime.states import AwaitingRetry, Cancelled, Crashed, Late, State, StateType, utcnow
from runtime.stores.dynamo import Item, iso
from runtime.stores.paging import batch_get
from runtime.stores.runs import state_shards

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "SweepReport",
    "crash_stale_runs",
    "mark_late_runs",
    "release_run_leases",
    "run_sweep_loop",
    "sweep",
]

HEARTBEAT_ATTRIBUTE = "heartbeat_at"
"""The run item's numeric heartbeat (epoch seconds) a worker refreshes while its run executes."""

DEFAULT_HEARTBEAT_TIMEOUT = 60.0
"""Seconds without a heartbeat after which a running flow run counts as crashed."""


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


def release_run_leases(stores: Stores, run_id: str) -> int:
    """Give back every concurrency lease the flow run ``run_id`` holds: how many this call freed.

    The leases a claim takes (the pool's and the deployment's ``concurrency_limit``)
    name the run as their holder. Each release is conditional, so a lease released
    by someone else meanwhile counts once, for them.
    """
    table = stores.concurrency.table.name
    leases = stores.db.scan(
        table,
        "begins_with(item_type, :t) AND holder = :h",
        values={":t": "lease#", ":h": run_id},
    )
    return sum(1 for lease in list(leases) if stores.concurrency.release(lease["lease_id"]))


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


RequeueFn = Callable[["Stores", FlowRun], bool]
"""Put a run back on its pool's queue; True when it was sent (the dispatch service)."""


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
            ended: State = Crashed(message=message)
            if state_type is StateType.CANCELLING:
                ended = Cancelled(message=f"{message} It was being cancelled.")
            result = stores.runs.set_state_if_unchanged(
                "flow_run",
                run.id,
                ended,
                expected_version=run.state_version,
                condition=f"{HEARTBEAT_ATTRIBUTE} < :hb_cutoff",
                values={":hb_cutoff": cutoff_epoch},
                now=now,
            )
            if result is None or result.status != "ACCEPT":
                continue  # a heartbeat, the worker or another sweep changed it first
            if state_type is StateType.CANCELLING:
                report.cancelled += 1
            else:
                report.crashed += 1
            report.leases_released += release_run_leases(stores, run.id)
            if state_type is StateType.CANCELLING:
                continue
            retry = _retry_state(run, now, message)
            if retry is None:
                continue
            retried = stores.runs.set_state_if_unchanged(
                "flow_run", run.id, retry, expected_version=result.state_version, now=now
            )
            if retried is None or retried.status != "ACCEPT":
                continue
            report.retried += 1
            if requeue is not None and requeue(stores, stores.runs.read_flow_run(run.id)):
                report.requeued += 1


def mark_late_runs(
    stores: Stores, report: SweepReport, *, now: datetime, after_seconds: float
) -> None:
    """Rename Scheduled runs whose start time passed ``after_seconds`` ago to Late.

    Only runs whose state is named Scheduled (not AwaitingRetry, not already Late),
    as Prefect's MarkLateRuns; the state keeps the run's scheduled time.
    """
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
        if result is not None and result.status == "ACCEPT":
            report.late += 1


def _settings_value(name: str, default: float) -> float:
    from runtime.settings import get_settings

    return float(getattr(get_settings(), name, default))


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
    timeout = heartbeat_timeout_seconds
    if timeout is None:
        timeout = _settings_value("heartbeat_timeout_seconds", DEFAULT_HEARTBEAT_TIMEOUT)
    after = late_after_seconds
    if after is None:
        after = _settings_value("late_after_seconds", 15.0)
    report = SweepReport()
    actions: list[tuple[str, Callable[[], None]]] = [
        (
            "crash stale runs",
            lambda: crash_stale_runs(stores, report, now=moment, timeout_seconds=timeout),
        ),
        ("mark late runs", lambda: mark_late_runs(stores, report, now=moment, after_seconds=after)),
        ("reclaim leases", lambda: _reclaim(stores, report, moment)),
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
