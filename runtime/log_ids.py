"""Log line ids chosen by the writer, so that a retried write stores each line once.

:func:`new_log_id` gives 8 hex digits: a random per-process start (drawn again
in a forked child) plus a counter. Lines of one process written in the same
microsecond keep their order (the logs table's sort key is
``<timestamp>#<id>``), and lines of different processes do not collide.
Kept out of the stores so that HTTP clients can choose ids without importing them.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading

__all__ = ["new_log_id"]

_SUFFIX_LOCK = threading.Lock()
_SUFFIX_COUNTER = itertools.count(secrets.randbelow(2**31))


def _restart_suffixes_after_fork() -> None:
    # A forked child inherits the parent's counter (and maybe a held lock): without a
    # new random start its lines would get the parent's keys and overwrite them.
    global _SUFFIX_LOCK, _SUFFIX_COUNTER
    _SUFFIX_LOCK = threading.Lock()
    _SUFFIX_COUNTER = itertools.count(secrets.randbelow(2**31))


os.register_at_fork(after_in_child=_restart_suffixes_after_fork)


def new_log_id() -> str:
    """A fresh log line id: 8 hex digits, a random per-process start plus a counter.

    Lines of one process written in the same microsecond keep their order; a forked
    child starts from a new random value. Clients send it as ``LogRecord.id`` so
    that a retried write stores each line once.
    """
    # Below 2**31 at start, so the 8 hex digits only wrap after 2**31 records in one process.
    with _SUFFIX_LOCK:
        value = next(_SUFFIX_COUNTER)
    return f"{value % 2**32:08x}"
