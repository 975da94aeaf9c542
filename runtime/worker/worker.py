"""The worker: long-polls a work pool's queue and executes each claimed flow run in a child.

Threads:

* the **poller** long-polls the pool's queue (``WaitTimeSeconds`` up to 20) for
  as many messages as it has free slots (plus ``prefetch``), and claims each
  run (``runtime.services.claims.claim_flow_run``): won -> a child process
  executes it; lost -> the message is deleted (``drop_message``) or hidden
  until it is worth another look (``retry_after``);
* the **supervisor** watches every child: it heartbeats each run every
  ``heartbeat_seconds`` (the run item and the message's visibility, and the
  run's concurrency lease), reads each run's state every ``cancel_poll_seconds``
  (a CANCELLING run's child gets SIGTERM, then SIGKILL after
  ``cancel_grace_seconds``; the run ends CANCELLED), and when a child exits it
  settles the run: a run left unfinished is CRASHED with the exit status, the
  slots are released, and only then is the message deleted;
* the caller's thread (:meth:`Worker.run`) waits for a stop request (SIGTERM or
  SIGINT): polling stops, running flows get ``shutdown_grace_seconds`` to
  finish, the rest are handed back (AwaitingRetry, message visible again, slots
  released) before their children are stopped, and ``run`` returns 0.

A run executes at most once: only the claim's winner starts a child, and a
message is deleted only once its run is final (or was never this worker's).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import NotFound
from runtime.resources import DEFAULT_POOL
from runtime.services import worker_runs
from runtime.services.claims import claim_flow_run
from runtime.services.dispatch import defer_message
from runtime.services.work_pools import ensure_work_pool
from runtime.settings import get_settings
from runtime.states import StateType, utcnow
from runtime.stores.workers import WorkerInfo, WorkerStore
from runtime.worker.child import Job
from runtime.worker.code import CodeNotFound, code_directory
from runtime.worker.registration import default_worker_name, new_worker_id, stratoflow_version
from runtime.worker.runner import ChildProcess, exit_message
from runtime.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from runtime.models import FlowRun
    from runtime.stores import Stores
    from runtime.stores.queues import ReceivedMessage

logger = logging.getLogger("stratoflow.worker")

CANCEL_TYPES = frozenset({StateType.CANCELLING, StateType.CANCELLED})
SUPERVISE_SECONDS = 0.2
"""How often the supervisor looks at its children (exits are noticed this fast)."""


@dataclass
class WorkerOptions:
    """How one worker runs (``stratoflow worker start`` options and settings)."""

    pool: str
    name: str | None = None
    limit: int | None = None
    """Most flow runs this worker executes at once (None: no limit of its own)."""
    prefetch: int = 0
    """Messages received beyond free slots; they wait here, hidden, until a slot frees."""
    heartbeat_seconds: float | None = None
    heartbeat_timeout_seconds: float | None = None
    cancel_grace_seconds: float | None = None
    shutdown_grace_seconds: float | None = None
    poll_wait_seconds: int | None = None
    child_env: dict[str, str] = field(default_factory=dict)
    """Variables set in each child's environment (over the worker's own)."""


@dataclass
class ActiveRun:
    """A run this worker claimed and whose child runs."""

    run: FlowRun
    message: ReceivedMessage
    child: ChildProcess
    next_heartbeat: float
    next_state_check: float
    taken: bool = False
    """True once a cancellation or the shutdown took charge of it (the supervisor skips it)."""
    handed_back: bool = False


class Worker:
    """One worker process's loop (see the module docstring)."""

    def __init__(self, stores: Stores, options: WorkerOptions) -> None:
        settings = get_settings()
        worker_settings = WorkerSettings()
        self.stores = stores
        self.options = options
        self.pool = options.pool
        self.name = options.name or default_worker_name()
        self.id = new_worker_id(self.name)
        self.heartbeat_seconds = options.heartbeat_seconds or settings.heartbeat_seconds
        self.visibility_seconds = max(
            options.heartbeat_timeout_seconds or settings.heartbeat_timeout_seconds,
            2 * self.heartbeat_seconds,
        )
        self.cancel_grace = (
            options.cancel_grace_seconds
            if options.cancel_grace_seconds is not None
            else settings.cancel_grace_seconds
        )
        self.shutdown_grace = (
            options.shutdown_grace_seconds
            if options.shutdown_grace_seconds is not None
            else settings.shutdown_grace_seconds
        )
        self.poll_wait = (
            options.poll_wait_seconds
            if options.poll_wait_seconds is not None
            else worker_settings.poll_wait_seconds
        )
        self.cancel_poll = worker_settings.cancel_poll_seconds
        self.registration_ttl = max(
            worker_settings.registration_ttl_seconds, self.poll_wait + 2 * self.heartbeat_seconds
        )
        self.registration_interval = worker_settings.registration_interval_seconds
        self.cache_dir = worker_settings.cache_dir
        self.workers = WorkerStore(stores.db, stores.specs.registry)
        self.info = WorkerInfo(
            name=self.name,
            id=self.id,
            work_pool_name=self.pool,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=stratoflow_version(),
            limit=options.limit,
        )
        self._lock = threading.RLock()
        self._active: dict[str, ActiveRun] = {}
        self._backlog: list[ReceivedMessage] = []
        self._stop = threading.Event()
        self._stopped_polling = threading.Event()
        self._slot_freed = threading.Event()
        self._next_registration = 0.0
        self.executed: list[str] = []
        """Ids of the runs this worker started a child for (for tests and logs)."""

    # ------------------------------------------------------------------ public

    def request_stop(self) -> None:
        """Stop polling and shut down (what SIGTERM and SIGINT do); returns at once."""
        self._stop.set()
        self._slot_freed.set()

    @property
    def running(self) -> list[str]:
        """Ids of the runs whose children are running now."""
        with self._lock:
            return list(self._active)

    def run(self) -> int:
        """Poll and execute until asked to stop, then shut down cleanly; the exit status (0)."""
        if self.pool == DEFAULT_POOL:  # the default pool is there for whoever needs it
            ensure_work_pool(self.stores, self.pool)
        else:
            self.stores.registry.read_work_pool(self.pool)  # NotFound: an unknown pool
        self.stores.queues.queue(self.pool)  # its queue exists (created when missing)
        self._register(force=True)
        logger.info(
            "Worker %s polling work pool %r (limit %s)",
            self.id,
            self.pool,
            self.options.limit if self.options.limit is not None else "none",
        )
        with self._signals():
            poller = threading.Thread(target=self._poll_loop, name="worker-poller", daemon=True)
            supervisor = threading.Thread(
                target=self._supervise_loop, name="worker-supervisor", daemon=True
            )
            poller.start()
            supervisor.start()
            while not self._stop.wait(0.5):
                pass
            self._shutdown(poller, supervisor)
        return 0

    # ------------------------------------------------------------------ polling

    def _free_slots(self) -> int:
        with self._lock:
            busy = len(self._active) + len(self._backlog)
        if self.options.limit is None:
            return 10
        return self.options.limit + self.options.prefetch - busy

    def _poll_loop(self) -> None:
        try:
            while not self._stop.is_set():
                free = self._free_slots()
                if free <= 0:
                    self._slot_freed.wait(1.0)
                    self._slot_freed.clear()
                    continue
                try:
                    messages = self.stores.queues.receive(
                        self.pool,
                        max_messages=min(10, free),
                        wait_seconds=self.poll_wait,
                        visibility_timeout=int(self.visibility_seconds),
                    )
                except Exception as exc:
                    logger.warning("polling work pool %r failed: %r", self.pool, exc)
                    self._stop.wait(1.0)
                    continue
                self.info.last_poll = utcnow()
                for message in messages:
                    if self._stop.is_set():
                        self._release(message)
                        continue
                    self._take(message)
                self._register()
        finally:
            self._stopped_polling.set()

    def _take(self, message: ReceivedMessage) -> None:
        """Start the message's run now if a slot is free, else keep it in the backlog."""
        with self._lock:
            room = self.options.limit is None or len(self._active) < self.options.limit
            if not room:
                self._backlog.append(message)
                return
        self._start(message)

    def _release(self, message: ReceivedMessage, delay: float = 0) -> None:
        with contextlib.suppress(Exception):
            self.stores.queues.release(self.pool, message.receipt_handle, delay)

    def _drop(self, message: ReceivedMessage) -> None:
        with contextlib.suppress(Exception):
            self.stores.queues.delete(self.pool, message.receipt_handle)

    def _start(self, message: ReceivedMessage) -> None:
        """Claim the message's run; the winner starts its child (see the module docstring)."""
        body = message.body
        if body is None:  # never valid: SQS moves it to the DLQ after its receives
            logger.error("unreadable message %s in pool %r", message.message_id, self.pool)
            return
        try:
            claim = claim_flow_run(self.stores, body.flow_run_id, self.id)
        except Exception as exc:
            logger.warning("claiming flow run %s failed: %r", body.flow_run_id, exc)
            self._release(message, 1.0)
            return
        if not claim.won:
            logger.info("flow run %s not started: %s", body.flow_run_id, claim.reason)
            if claim.drop_message:
                self._drop(message)
            else:  # released, or sent again fresh before it would reach the DLQ
                with contextlib.suppress(Exception):
                    defer_message(self.stores, self.pool, message, claim.retry_after or 1.0)
            return
        run = claim.run
        assert run is not None
        try:
            job = self._job(run)
        except (CodeNotFound, NotFound) as exc:
            worker_runs.crash_run(self.stores, run.id, self.id, str(exc))
            self._drop(message)
            return
        child = ChildProcess(job, self._child_env())
        now = time.monotonic()
        with self._lock:
            self._active[run.id] = ActiveRun(
                run, message, child, now + self.heartbeat_seconds, now + self.cancel_poll
            )
            self.executed.append(run.id)
        logger.info("Worker %s executing flow run %s (pid %s)", self.id, run.id, child.pid)
        self._register(force=True)

    def _job(self, run: FlowRun) -> Job:
        if run.deployment_id is None:
            raise CodeNotFound(f"flow run {run.id} has no deployment: no code to execute")
        deployment = self.stores.registry.read_deployment(run.deployment_id)
        if not deployment.entrypoint:
            raise CodeNotFound(
                f"deployment {deployment.flow_name}/{deployment.name} has no entrypoint"
            )
        directory = code_directory(self.stores, deployment, Path(self.cache_dir))
        return Job(run.id, deployment.entrypoint, str(directory), dict(deployment.parameters))

    def _child_env(self) -> dict[str, str]:
        env = {"STRATOFLOW_PREFIX": self.stores.specs.prefix}
        endpoint = getattr(self.stores, "endpoint_url", None)
        if endpoint:  # the embedded default's server: the child must talk to the same one
            env.update(
                {
                    "AWS_ENDPOINT_URL": endpoint,
                    "AWS_ACCESS_KEY_ID": "embedded",
                    "AWS_SECRET_ACCESS_KEY": "embedded",
                    "AWS_DEFAULT_REGION": "us-east-1",
                }
            )
        env.update(self.options.child_env)
        return env

    # ------------------------------------------------------------------ supervising

    def _supervise_loop(self) -> None:
        while not (self._stop.is_set() and self._stopped_polling.is_set() and not self.running):
            try:
                self._supervise_once()
            except Exception as exc:  # a store hiccup: try again at the next tick
                logger.warning("supervising runs failed: %r", exc)
            time.sleep(SUPERVISE_SECONDS)

    def _supervise_once(self) -> None:
        now = time.monotonic()
        with self._lock:
            active = [a for a in self._active.values() if not a.taken]
        for entry in active:
            code = entry.child.poll()
            if code is not None:
                with self._lock:
                    if entry.taken:  # a cancellation or the shutdown settles it
                        continue
                    entry.taken = True
                self._settle(entry, code)
                continue
            if now >= entry.next_state_check:
                entry.next_state_check = now + self.cancel_poll
                self._check_cancel(entry)
            if now >= entry.next_heartbeat:
                entry.next_heartbeat = now + self.heartbeat_seconds
                self._heartbeat(entry)
        self._start_from_backlog(now)
        self._register()

    def _heartbeat(self, entry: ActiveRun) -> None:
        if not worker_runs.heartbeat(self.stores, entry.run, self.id):
            self._check_still_ours(entry)
        self.stores.queues.extend(self.pool, entry.message.receipt_handle, self.visibility_seconds)

    def _check_still_ours(self, entry: ActiveRun) -> None:
        """The heartbeat was refused: if another worker claimed the run since, stop ours.

        (Refused also while the run waits for an in-process retry, or just ended:
        then it is still this worker's and nothing is done.)
        """
        try:
            current = self.stores.runs.read_flow_run(entry.run.id)
        except NotFound:
            current = None
        if current is not None and current.worker_id == self.id:
            return
        with self._lock:
            if entry.taken:
                return
            entry.taken = True
            entry.handed_back = True  # not ours: its state and message are left alone
        logger.warning(
            "Flow run %s is no longer this worker's (claimed by %s): stopping its process",
            entry.run.id,
            current.worker_id if current is not None else "nobody: it was deleted",
        )
        threading.Thread(
            target=self._cancel, args=(entry,), name="worker-lost-run", daemon=True
        ).start()

    def _check_cancel(self, entry: ActiveRun) -> None:
        state = _state_type(self.stores, entry.run.id)
        if state not in CANCEL_TYPES:
            return
        with self._lock:
            if entry.taken:
                return
            entry.taken = True
        logger.info("Flow run %s is being cancelled: stopping its process", entry.run.id)
        threading.Thread(
            target=self._cancel, args=(entry,), name="worker-cancel", daemon=True
        ).start()

    def _cancel(self, entry: ActiveRun) -> None:
        code = entry.child.stop(self.cancel_grace)
        self._settle(entry, code)

    def _settle(self, entry: ActiveRun, code: int) -> None:
        """The child exited: end the run if it did not, free its slots, then the message."""
        run_id = entry.run.id
        try:
            if entry.handed_back:  # another worker runs it now: its message is theirs
                self._release(entry.message)
            else:
                current = self.stores.runs.read_flow_run(run_id)
                kind = current.state.type
                if kind in CANCEL_TYPES:
                    worker_runs.finish_cancelled(
                        self.stores,
                        run_id,
                        self.id,
                        "The flow run was cancelled: its process was stopped.",
                    )
                elif kind is StateType.PAUSED or current.state.is_final():
                    worker_runs.release_run_leases(self.stores, current)
                else:
                    logger.warning("flow run %s: %s", run_id, exit_message(code))
                    worker_runs.crash_run(self.stores, run_id, self.id, exit_message(code))
                self._drop(entry.message)
        except Exception as exc:  # the heartbeat stops: the sweep ends the run
            logger.error("settling flow run %s failed: %r", run_id, exc)
        finally:
            with self._lock:
                self._active.pop(run_id, None)
            self._slot_freed.set()
            self._register(force=True)

    def _start_from_backlog(self, now: float) -> None:
        while True:
            with self._lock:
                room = self.options.limit is None or len(self._active) < self.options.limit
                if not (room and self._backlog) or self._stop.is_set():
                    break
                message = self._backlog.pop(0)
            self._start(message)
        with self._lock:
            waiting = list(self._backlog)
        if waiting and now >= self._next_backlog_extend:
            self._next_backlog_extend = now + self.heartbeat_seconds
            for message in waiting:
                with contextlib.suppress(Exception):
                    self.stores.queues.extend(
                        self.pool, message.receipt_handle, self.visibility_seconds
                    )

    _next_backlog_extend = 0.0

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self, poller: threading.Thread, supervisor: threading.Thread) -> None:
        logger.info("Worker %s stopping: no new runs; running flows may finish", self.id)
        with self._lock:
            backlog, self._backlog = self._backlog, []
        for message in backlog:
            self._release(message)
        deadline = time.monotonic() + self.shutdown_grace
        while self.running and time.monotonic() < deadline:
            time.sleep(SUPERVISE_SECONDS)
        with self._lock:
            left = [a for a in self._active.values() if not a.taken]
            for entry in left:
                entry.taken = True
        for entry in left:
            entry.handed_back = worker_runs.hand_back(self.stores, entry.run.id, self.id)
            logger.warning(
                "Flow run %s did not finish within %ss: %s",
                entry.run.id,
                self.shutdown_grace,
                "handed back" if entry.handed_back else "its process is stopped",
            )
        for entry in left:
            self._settle(entry, entry.child.stop(self.cancel_grace))
        # a long poll in flight is not waited for: what it receives after the stop is
        # released by the poller, or, if this process is gone by then, becomes visible
        # again after the visibility timeout (hidden a while, never lost)
        poller.join(min(self.poll_wait, 2.0))
        supervisor.join(self.cancel_grace + 10)
        with contextlib.suppress(Exception):
            self.workers.delete(self.pool, self.name)
        logger.info("Worker %s stopped", self.id)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT request a stop (only in the main thread; restored after)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, frame: object) -> None:
            logger.info("Worker %s received %s", self.id, signal.Signals(signum).name)
            self.request_stop()

        for signum in previous:
            signal.signal(signum, handler)
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    # ------------------------------------------------------------------ registration

    def _register(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_registration:
            return
        self._next_registration = now + self.registration_interval
        self.info.running = self.running
        try:
            self.workers.put(self.info, self.registration_ttl)
        except Exception as exc:
            logger.warning("registering worker %s failed: %r", self.id, exc)


def _state_type(stores: Stores, run_id: str) -> StateType | None:
    """The run's state type (one small consistent read), None when it is gone."""
    runs = stores.runs
    item = runs.db.get(runs.table.name, {"id": run_id}, projection="#t", names={"#t": "state_type"})
    return None if item is None else StateType(item["state_type"])
