"""One backoff policy for every retry and poll loop: capped exponential with full jitter.

AWS asks clients that retry throttled or unprocessed work to back off
exponentially with jitter ("full jitter": a uniform delay in ``[0, cap]``, where
the cap doubles per attempt up to a ceiling), so that many waiters that lost the
same race do not come back at the same instant. Every loop in Stratoflow that
waits before trying again (the HTTP transport, ``BatchWriteItem`` leftovers,
lease acquisition, cache waits, log shipping, guarded record transactions) takes
its delays from a :class:`Backoff`, so the policy lives in one place.

``Backoff(base=0.05, cap=1.0).delay(attempt)`` gives the delay before retry
number ``attempt + 1`` (``attempt`` counts from 0). ``jitter=False`` gives the
plain cap (deterministic: for polls whose spacing matters more than spreading).
``delays(max_attempts)`` yields the successive delays, and
:meth:`Backoff.sleep` waits one of them on a caller-supplied sleep function, so
tests can pass a recorder instead of sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: attempt ``n`` waits up to ``min(cap, base * factor**n)``."""

    base: float = 0.05
    """The first attempt's ceiling, in seconds."""
    cap: float = 5.0
    """No delay is ever longer than this, in seconds."""
    factor: float = 2.0
    """How much the ceiling grows per attempt."""
    jitter: bool = True
    """Full jitter (uniform in ``[0, ceiling]``); ``False`` waits the ceiling itself."""
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)
    """A number in ``[0, 1)``; injected by tests to make the jitter deterministic."""

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff base and cap must be >= 0")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt + 1``."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # factor**attempt overflows for absurd attempt counts: cap the exponent first
        exponent = min(attempt, 64)
        return float(min(self.cap, self.base * self.factor**exponent))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        ceiling = self.ceiling(attempt)
        return ceiling * self.rng() if self.jitter else ceiling

    def delays(self, attempts: int) -> Iterator[float]:
        """The delays before each of ``attempts`` retries, in order."""
        for attempt in range(attempts):
            yield self.delay(attempt)

    def sleep(
        self,
        attempt: int,
        *,
        sleep: Callable[[float], None] = time.sleep,
        limit: float | None = None,
    ) -> float:
        """Wait the delay for ``attempt`` (at most ``limit`` seconds) and return it."""
        wait = self.delay(attempt)
        if limit is not None:
            wait = max(0.0, min(wait, limit))
        if wait:
            sleep(wait)
        return wait
