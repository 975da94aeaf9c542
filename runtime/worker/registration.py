"""Who this worker is: its id, name and what ``stratoflow worker ls`` shows about it."""

from __future__ import annotations

import os
import socket
import uuid
from importlib.metadata import PackageNotFoundError, version


def stratoflow_version() -> str:
    """The installed stratoflow version (``0.0.0+unknown`` when not installed)."""
    try:
        return version("stratoflow")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def default_worker_name() -> str:
    """``<host>-<pid>``: unique on a machine, recognisable in ``worker ls``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def new_worker_id(name: str) -> str:
    """The id the worker's claims and heartbeats carry: its name and a random suffix.

    Two workers given the same ``--name`` still have different ids, so one never
    heartbeats or hands back the other's run.
    """
    return f"{name}:{uuid.uuid4().hex[:8]}"
