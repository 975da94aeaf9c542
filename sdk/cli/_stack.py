"""The pieces of a local stack (``stratoflow dev``, ``stratoflow api serve``) and their lifecycle.

A stack is a list of *services*, each with ``start()`` and ``stop()``; they
start in order and stop in reverse, also when one of them fails to start.
Background work that ``stratoflow dev`` runs beside the API (the maintenance
sweep, the scheduler loop) is one entry of :data:`DEV_SERVICES`; the workers of
``--worker POOL`` come from :func:`worker_services` (``stratoflow worker start``
subprocesses).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from runtime.stores import Stores


class Service(Protocol):
    """Something the stack starts and stops (a server, a loop, a subprocess)."""

    def start(self) -> object:
        """Start; return once the service is usable."""
        ...

    def stop(self) -> None:
        """Stop (idempotent); bounded in time."""
        ...


@dataclass
class StackContext:
    """What a running stack offers the services started after the API."""

    endpoint_url: str | None
    prefix: str
    api_url: str
    stores: Stores
    env: dict[str, str] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)


ServiceFactory = Callable[[StackContext], Service]


class LoopService:
    """Call ``fn`` every ``interval`` seconds on a daemon thread until stopped.

    An exception in one iteration is reported through ``on_error`` (default:
    printed to stderr) and the loop goes on: one bad sweep must not stop dev.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[], object],
        *,
        interval: float,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.name = name
        self.fn = fn
        self.interval = interval
        self.on_error = on_error or _report_loop_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LoopService:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"stratoflow-{self.name}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.fn()
            except Exception as exc:
                self.on_error(self.name, exc)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def _report_loop_error(name: str, exc: BaseException) -> None:
    import sys

    print(f"stratoflow dev: {name} loop failed: {exc!r}", file=sys.stderr, flush=True)


class ThreadService:
    """Run ``target(stop_event)`` on a daemon thread; :meth:`stop` sets the event and joins."""

    def __init__(self, name: str, target: Callable[[threading.Event], object]) -> None:
        self.name = name
        self.target = target
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ThreadService:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.target, args=(self._stop,), name=f"stratoflow-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def maintenance_service(ctx: StackContext) -> Service:
    """The maintenance sweep (:func:`runtime.services.sweep.run_sweep_loop`) every
    ``STRATOFLOW_SWEEP_INTERVAL_SECONDS`` (5 s): crashed workers' runs, Late runs, leases.

    What a sweep changed is printed (one line); a failed action is reported on stderr.
    """
    from runtime.services.sweep import SweepReport, run_sweep_loop
    from runtime.settings import get_settings

    def report(outcome: SweepReport) -> None:
        import sys

        changes = {k: v for k, v in outcome.as_dict().items() if v and k != "errors"}
        if changes:
            text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items())
            print(f"stratoflow dev: maintenance sweep: {text}", flush=True)
        for problem in outcome.errors:
            print(f"stratoflow dev: maintenance sweep failed: {problem}", file=sys.stderr)

    interval = get_settings().sweep_interval_seconds
    return ThreadService(
        "maintenance",
        lambda stop: run_sweep_loop(ctx.stores, interval, stop, on_report=report),
    )


#: Background services ``stratoflow dev`` starts after the API, in this order (stopped in
#: reverse). Each entry builds one service from the running stack's :class:`StackContext`.
DEV_SERVICES: list[ServiceFactory] = [maintenance_service]


class WorkerProcess:
    """A ``stratoflow worker start --pool POOL`` subprocess with the stack's environment.

    :meth:`start` returns once the worker registered itself (it polls); a worker
    that exits first is a RuntimeError naming its exit status. :meth:`stop` sends
    SIGTERM (the worker finishes or hands back its runs, then exits) and waits up
    to ``stop_timeout`` seconds before SIGKILL.
    """

    def __init__(
        self, pool: str, env: dict[str, str], stores: Stores, *, stop_timeout: float
    ) -> None:
        self.pool = pool
        self.env = env
        self.stores = stores
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        from runtime.stores.workers import WorkerStore

        argv = [sys.executable, "-m", "sdk.cli", "worker", "start", "--pool", self.pool]
        self.process = subprocess.Popen(argv, env=self.env)
        registry = WorkerStore(self.stores.db, self.stores.specs.registry)
        deadline = time.monotonic() + timeout
        while not any(w.pid == self.process.pid for w in registry.list(self.pool)):
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"the worker on pool {self.pool!r} exited with status {code}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the worker on pool {self.pool!r} did not start in {timeout}s")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_env(ctx: StackContext) -> dict[str, str]:
    """The environment of the stack's workers: this process's plus the stack's.

    Workers talk to DynamoDB and SQS directly; their flow-run children too (no API
    URL: the lean path, as a worker in AWS with the stack's environment).
    """
    env = {**os.environ, **ctx.env}
    env.pop("STRATOFLOW_API_URL", None)
    env.pop("STRATOFLOW_API_TOKEN", None)
    return env


def worker_services(pools: list[str]) -> list[ServiceFactory]:
    """The workers ``stratoflow dev --worker POOL`` starts: one :class:`WorkerProcess` per pool.

    Each is started after :data:`DEV_SERVICES` and stopped before them (SIGTERM, so
    running flows finish or are handed back within the shutdown grace).
    """
    from runtime.settings import get_settings

    settings = get_settings()
    stop_timeout = settings.shutdown_grace_seconds + settings.cancel_grace_seconds + 15

    def factory(pool: str) -> ServiceFactory:
        return lambda ctx: WorkerProcess(
            pool, worker_env(ctx), ctx.stores, stop_timeout=stop_timeout
        )

    return [factory(pool) for pool in pools]


class ServiceGroup:
    """Services started in order and stopped in reverse order (also on a failed start)."""

    def __init__(self) -> None:
        self._exit = contextlib.ExitStack()

    def start(self, service: Service) -> Service:
        """Start ``service`` and register its stop; returns it."""
        service.start()
        self._exit.callback(service.stop)
        return service

    def callback(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` at shutdown (in reverse order with the services)."""
        self._exit.callback(fn)

    def stop(self) -> None:
        """Stop every started service, newest first."""
        self._exit.close()

    def __enter__(self) -> ServiceGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (handlers restored after).

    The main thread waits on the event and shuts down in order, instead of a
    ``KeyboardInterrupt`` landing at a random point of the shutdown.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_for(stop: threading.Event) -> None:
    """Block until ``stop`` is set (wakes up regularly so signals are handled promptly)."""
    while not stop.wait(0.5):
        pass


def set_environ(values: dict[str, str]) -> None:
    """Export ``values`` into this process's environment and drop cached settings."""
    from runtime.settings import get_settings

    os.environ.update(values)
    get_settings.cache_clear()
