"""Shipping run logs to the log store in the background, and the ``logging`` handler that feeds it.

:class:`LogShipper` queues log lines in memory and a daemon thread writes them in
batches to a :class:`~runtime.stores.logs.LogStore`, or to any :class:`LogSink`
(an object with ``write(records)``, e.g. the HTTP API's ``POST /logs``): when
``batch_size`` lines are waiting, or when the oldest waiting line is
``interval`` seconds old, or when someone calls :meth:`LogShipper.flush`.
Only that thread writes, so lines reach the store in the order they were
emitted. A failed write is retried with exponential backoff (the same items,
or for a sink the same records with the ids chosen before the first attempt, so
a retry never duplicates a line); when the attempts run out, the lines are
dropped and the loss is reported on stderr. Nothing here ever raises into the
code that logs.

:class:`RunLogHandler` turns ``logging`` records carrying a ``flow_run_id``
(and optionally ``task_run_id``) attribute, set with ``extra=`` or a
``LoggerAdapter``, into :class:`~runtime.models.LogRecord` and emits them to a
shipper.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TextIO, runtime_checkable

from runtime.backoff import Backoff
from runtime.log_ids import new_log_id
from runtime.models import LogRecord
from runtime.stores.dynamo import Item
from runtime.stores.logs import LogStore

_Entry = tuple[int, float, LogRecord]  # (emit number, monotonic arrival time, record)


@runtime_checkable
class LogSink(Protocol):
    """Anything that stores a batch of log lines (raising when it could not)."""

    def write(self, records: list[LogRecord]) -> None:
        """Store every record of the batch, or raise."""


class LogShipper:
    """Batches log lines in memory and writes them to a store from a daemon thread.

    ``store`` is a :class:`LogStore` (lines are converted to items first, so a
    bad line is dropped alone) or any :class:`LogSink` (the batch is handed to
    its ``write``). An error with ``retryable = False`` (e.g. the API refusing
    the batch as invalid) is not retried.

    ``emit`` is thread-safe and cheap (it only queues). At most ``max_pending``
    lines wait in memory; beyond that new lines are dropped and the loss reported,
    so a store that is down cannot exhaust the process's memory. A write is tried
    ``max_attempts`` times, with a :class:`~runtime.backoff.Backoff` in between
    (full jitter under a ceiling of ``backoff``, ``2 * backoff``, ... at most
    5 s). Reports go to ``stream`` (default: ``sys.stderr`` at the time
    of the report). The shipper closes itself at interpreter exit, flushing what
    is left.
    """

    def __init__(
        self,
        store: LogStore | LogSink,
        *,
        batch_size: int = 100,
        interval: float = 1.0,
        max_attempts: int = 5,
        backoff: float = 0.2,
        max_pending: int = 100_000,
        stream: TextIO | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if interval <= 0:
            raise ValueError("interval must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_pending < batch_size:
            raise ValueError("max_pending must be at least batch_size")
        self.store = store
        self.batch_size = batch_size
        self.interval = interval
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._backoff = Backoff(base=backoff, cap=5.0)
        self.max_pending = max_pending
        self._stream = stream
        self._cond = threading.Condition()
        self._pending: deque[_Entry] = deque()
        self._emitted = 0  # emit calls so far (each gets the next number, from 1)
        self._last_queued = 0  # number of the newest line that was queued
        self._done = 0  # every queued line numbered <= this is written or dropped
        self._flush_target = 0  # the worker ships at once while _done < this
        self._first_dropped: int | None = None  # number of the first line ever lost
        self._unreported_overflow = 0
        self._dropped = 0
        self._written = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="stratoflow-logship", daemon=True)
        self._thread.start()
        atexit.register(self._close_at_exit)

    # ------------------------------------------------------------------ public

    @property
    def written(self) -> int:
        """Lines written to the store so far."""
        with self._cond:
            return self._written

    @property
    def dropped(self) -> int:
        """Lines lost so far (each loss was reported on the stream)."""
        with self._cond:
            return self._dropped

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        with self._cond:
            return self._closing

    def emit(self, record: LogRecord) -> None:
        """Queue one log line for writing; never blocks on I/O and never raises."""
        with self._cond:
            self._emitted += 1
            number = self._emitted
            if self._closing:
                self._lose(number)
                late = True
            elif len(self._pending) >= self.max_pending:
                self._lose(number)
                self._unreported_overflow += 1
                return
            else:
                late = False
                self._pending.append((number, time.monotonic(), record))
                self._last_queued = number
                if len(self._pending) in (1, self.batch_size):  # starts a timer, or is due
                    self._cond.notify_all()
        if late:
            self._report(
                f"a log line for flow run {record.flow_run_id} was emitted after the "
                f"shipper closed and was not stored: {record.message[:200]!r}"
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every line emitted before this call is written (or given up on).

        Returns True when all of them are in the store; False when ``timeout``
        seconds passed first or some were dropped (each drop is reported).
        Called from the shipper's own thread it returns False at once.
        """
        if threading.current_thread() is self._thread:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            asked = self._emitted
            target = self._last_queued
            if target > self._flush_target:
                self._flush_target = target
                self._cond.notify_all()
            while self._done < target:
                if not self._thread.is_alive():
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            finished = self._done >= target
            lost = self._first_dropped is not None and self._first_dropped <= asked
            return finished and not lost

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread. Idempotent; returns what :meth:`flush` returns.

        Lines emitted after ``close`` are not stored (each is reported).
        """
        ok = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        atexit.unregister(self._close_at_exit)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return ok

    # ------------------------------------------------------------------ worker

    def _close_at_exit(self) -> None:
        self.close(timeout=30.0)

    def _lose(self, number: int) -> None:
        # Called with the lock held.
        self._dropped += 1
        if self._first_dropped is None or number < self._first_dropped:
            self._first_dropped = number

    def _report(self, text: str) -> None:
        # Never through ``logging``: a handler feeding this shipper would loop.
        try:
            stream = self._stream or sys.stderr
            stream.write(f"stratoflow log shipper: {text}\n")
            stream.flush()
        except Exception:  # a closed stderr must not kill the thread
            pass

    def _next_batch(self) -> list[_Entry] | None:
        """Wait until a batch is due and take it; None when closing with nothing left."""
        with self._cond:
            while True:
                if self._pending:
                    due = (
                        len(self._pending) >= self.batch_size
                        or self._flush_target > self._done
                        or self._closing
                    )
                    wait = self._pending[0][1] + self.interval - time.monotonic()
                    if due or wait <= 0:
                        break
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            count = min(self.batch_size, len(self._pending))
            return [self._pending.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            with self._cond:
                overflow, self._unreported_overflow = self._unreported_overflow, 0
            if overflow:
                self._report(
                    f"dropped {overflow} log line(s): more than {self.max_pending} were "
                    "waiting to be written"
                )
            if batch is None:
                return
            written = 0
            try:
                written = self._ship([record for _, _, record in batch])
            except Exception as exc:  # a bug must not stop the thread or hang flush()
                self._report(f"dropped {len(batch)} log line(s): {exc!r}")
            with self._cond:
                self._written += written
                lost = len(batch) - written
                if lost:
                    self._dropped += lost
                    first = batch[0][0]
                    if self._first_dropped is None or first < self._first_dropped:
                        self._first_dropped = first
                self._done = batch[-1][0]
                self._cond.notify_all()

    def _ship(self, records: list[LogRecord]) -> int:
        """Write one batch with retries; returns how many lines were stored."""
        store = self.store
        to_item = getattr(store, "to_item", None)
        write_items = getattr(store, "write_items", None)
        if to_item is None or write_items is None:  # a LogSink: hand it the batch
            # Ids chosen once, here: a retry after a lost response rewrites the same lines.
            records = [r if r.id else r.model_copy(update={"id": new_log_id()}) for r in records]
            runs = {record.flow_run_id for record in records}
            return self._write_with_retries(lambda: store.write(records), len(records), runs)
        items: list[Item] = []
        for record in records:
            try:
                items.append(to_item(record))
            except Exception as exc:
                self._report(f"dropped a log line for flow run {record.flow_run_id!r}: {exc}")
        if not items:
            return 0
        runs = {str(i["flow_run_id"]) for i in items}
        return self._write_with_retries(lambda: write_items(items), len(items), runs)

    def _write_with_retries(self, write: Callable[[], object], count: int, runs: set[str]) -> int:
        for attempt in range(1, self.max_attempts + 1):
            try:
                write()
                return count
            except Exception as exc:
                if attempt == self.max_attempts or not getattr(exc, "retryable", True):
                    self._report(
                        f"dropped {count} log line(s) of flow run(s) {', '.join(sorted(runs))} "
                        f"after {attempt} failed write attempt(s): {exc!r}"
                    )
                    return 0
                self._backoff.sleep(attempt - 1, sleep=time.sleep)
        return 0  # pragma: no cover - the loop always returns


class RunLogHandler(logging.Handler):
    """A ``logging`` handler that ships records carrying a ``flow_run_id`` to a shipper.

    The run ids come from attributes of the ``logging.LogRecord``: ``flow_run_id``
    (required; records without it are ignored) and ``task_run_id`` (optional), as
    set by ``logger.info(..., extra={"flow_run_id": ...})`` or a ``LoggerAdapter``.
    The message is the handler's formatted text (by default the message followed by
    the traceback when ``exc_info`` is set, and the stack when ``stack_info`` is).
    """

    def __init__(self, shipper: LogShipper, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.shipper = shipper

    def to_log_record(self, record: logging.LogRecord) -> LogRecord | None:
        """The run log line for ``record``, or None when it names no flow run.

        Records logged with ``extra={"console_only": True}`` are not stored either
        (the engine's per-task "Finished in state ..." line: the state history
        already holds that fact, and storing it would double a task's writes).
        """
        flow_run_id = getattr(record, "flow_run_id", None)
        if flow_run_id is None or flow_run_id == "" or getattr(record, "console_only", False):
            return None
        task_run_id = getattr(record, "task_run_id", None)
        return LogRecord(
            flow_run_id=str(flow_run_id),
            task_run_id=None if task_run_id in (None, "") else str(task_run_id),
            name=record.name,
            level=min(100, max(0, record.levelno)),
            message=self.format(record),
            timestamp=datetime.fromtimestamp(record.created, UTC),
        )

    def emit(self, record: logging.LogRecord) -> None:
        """Convert and queue ``record``; errors go to ``logging``'s own ``handleError``."""
        try:
            line = self.to_log_record(record)
            if line is not None:
                self.shipper.emit(line)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Wait (up to 30 s) until the shipper has written what was emitted so far."""
        self.shipper.flush(timeout=30.0)


__all__ = ["LogShipper", "LogSink", "RunLogHandler"]
