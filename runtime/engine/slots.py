"""Waiting for concurrency slots: one waiter polls, the rest sleep until a release wakes them.

Shared by the direct and the API engine clients; only how a lease is acquired,
renewed and released differs between them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from runtime.backoff import Backoff
from runtime.errors import NotFound
from runtime.models import Lease

POLL_START = 0.02
POLL_MAX = 0.5
"""A waiting task polls for slots freed by other processes after a jittered backoff whose
ceiling starts at 20 ms and doubles up to 0.5 s (:class:`runtime.backoff.Backoff`)."""
POLL_BACKOFF = Backoff(base=POLL_START, cap=POLL_MAX)
RATE_POLL_BACKOFF = Backoff(base=POLL_START, cap=0.1)
"""Waits on rate limits poll more often: their slots drain on a schedule, not on a release."""
IDLE_WAIT = 5.0
"""Waiters that are not the poller re-check this often even if never woken (a safety net)."""


@dataclass(frozen=True)
class SlotRequest:
    """What one acquisition asks for besides the limit names and the holder."""

    slots: int = 1
    """Slots to take on every named limit."""
    lease_seconds: float | None = None
    """The lease's duration (None: the waiter's ``lease_seconds``)."""
    missing_ok: bool = False
    """Skip limits that do not exist instead of raising NotFound."""
    mode: Literal["concurrency", "rate_limit"] = "concurrency"
    """``rate_limit``: only decaying limits; the lease is never renewed nor released."""


class SlotWaitTimeout(TimeoutError):
    """The slots were not acquired within the time allowed."""


class SlotRetriesExhausted(Exception):
    """The slots were still taken after the number of retries allowed."""


class SlotWaiter:
    """Blocks until concurrency slots are held, and keeps held leases renewed.

    ``acquire(names, holder)`` returns a lease or None (no slot free now);
    ``renew(lease_id)`` and ``release(lease_id)`` act on one lease. A release in
    this process wakes one waiter on the limits it freed at once; slots freed
    elsewhere (other processes, expired leases) are noticed by one polling waiter
    per set of limits, backing off from 20 ms to 0.5 s. Held leases are renewed
    every ``lease_seconds / 3`` by a daemon thread.
    """

    def __init__(
        self,
        acquire: Callable[[list[str], str | None, SlotRequest], Lease | None],
        renew: Callable[[str, float], Any],
        release: Callable[[Lease], Any],
        *,
        lease_seconds: float,
        on_not_found: Callable[[], None] | None = None,
    ) -> None:
        self._acquire = acquire
        self._renew = renew
        self._release = release
        self.lease_seconds = lease_seconds
        self._on_not_found = on_not_found
        self._lock = threading.Lock()
        self._waiters: dict[frozenset[str], threading.Condition] = {}
        self._releases: dict[frozenset[str], int] = {}
        self._pollers: set[frozenset[str]] = set()
        self._leases: dict[str, tuple[Lease, float]] = {}
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()

    def acquire(
        self,
        names: list[str],
        *,
        holder: str | None,
        on_wait: Callable[[], None] | None = None,
        request: SlotRequest | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        cancelled: threading.Event | None = None,
    ) -> Lease:
        """Block until a lease on every named limit is held (see the class docstring).

        ``timeout`` (seconds) raises :class:`SlotWaitTimeout` once passed;
        ``max_retries`` raises :class:`SlotRetriesExhausted` after that many
        attempts beyond the first found the limits full; ``cancelled`` set stops the
        wait (:class:`SlotWaitTimeout`) at its next check.
        """
        request = request or SlotRequest()
        deadline = None if timeout is None else time.monotonic() + timeout
        polls = failures = 0
        waited = polling = False
        key = frozenset(names)
        condition: threading.Condition | None = None
        try:
            while True:
                with self._lock:
                    condition = self._waiters.get(key)
                    if condition is None:
                        condition = self._waiters[key] = threading.Condition(self._lock)
                    seen = self._releases.get(key, 0)
                if cancelled is not None and cancelled.is_set():
                    raise SlotWaitTimeout("the wait for concurrency slots was cancelled")
                try:
                    lease = self._acquire(names, holder, request)
                except NotFound:
                    if self._on_not_found is not None:
                        self._on_not_found()
                    raise
                if lease is not None:
                    if lease.limit_names and request.mode == "concurrency":
                        self._hold(lease, request.lease_seconds or self.lease_seconds)
                    return lease
                failures += 1
                if max_retries is not None and failures > max_retries:
                    raise SlotRetriesExhausted(
                        f"concurrency slots on {sorted(names)} still taken after "
                        f"{max_retries} retries"
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SlotWaitTimeout(
                        f"Attempt to acquire concurrency slots timed out after {timeout} second(s)"
                    )
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                with self._lock:
                    if not polling and key not in self._pollers:
                        self._pollers.add(key)
                        polling = True
                    if self._releases.get(key, 0) == seen:
                        backoff = (
                            RATE_POLL_BACKOFF if request.mode == "rate_limit" else POLL_BACKOFF
                        )
                        wait = backoff.delay(polls) if polling else IDLE_WAIT
                        if cancelled is not None:
                            wait = min(wait, POLL_MAX)
                        if remaining is not None:
                            wait = min(wait, remaining)
                        condition.wait(timeout=wait)
                if polling:
                    polls += 1
        finally:
            if polling and condition is not None:
                with self._lock:
                    self._pollers.discard(key)
                    condition.notify(1)  # hand the polling over to another waiter

    def _hold(self, lease: Lease, lease_seconds: float) -> None:
        with self._lock:
            self._leases[lease.id] = (lease, lease_seconds)
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="stratoflow-lease-renewer", daemon=True
                )
                self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            with self._lock:
                held = list(self._leases.values())
            for lease, seconds in held:
                try:
                    self._renew(lease.id, seconds)
                except NotFound:
                    with self._lock:
                        self._leases.pop(lease.id, None)
                except Exception as exc:
                    print(f"stratoflow: renewing lease {lease.id} failed: {exc}", file=sys.stderr)

    def release(self, lease: Lease) -> None:
        """Give the lease back and wake a waiter on each set of limits it frees."""
        if not lease.limit_names:
            return  # it holds nothing (every named limit was inactive or missing)
        try:
            self._release(lease)
        finally:
            freed = set(lease.limit_names)
            with self._lock:
                self._leases.pop(lease.id, None)
                for names, condition in self._waiters.items():
                    if names & freed:
                        self._releases[names] = self._releases.get(names, 0) + 1
                        condition.notify(lease.slots)

    def close(self) -> None:
        """Stop renewing (held leases then expire on their own)."""
        self._stop.set()
