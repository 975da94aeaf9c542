"""``sdk.logging``: run loggers (Prefect's ``prefect.logging``).

``get_run_logger()`` inside a flow or task run; ``get_logger(name)`` for a plain
logger under ``stratoflow`` (printed on the console, not stored with any run);
``disable_run_logger()`` silences the run loggers, and makes ``get_run_logger()``
outside a run return a logger that drops everything (for calling ``task.fn()`` in tests).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from runtime.engine.runlogs import ROOT_LOGGER, get_run_logger

__all__ = ["disable_logger", "disable_run_logger", "get_logger", "get_run_logger"]


def get_logger(name: str | None = None) -> logging.Logger:
    """The logger ``stratoflow.<name>`` (``stratoflow`` without a name)."""
    return logging.getLogger(f"{ROOT_LOGGER}.{name}" if name else ROOT_LOGGER)


@contextmanager
def disable_logger(name: str) -> Iterator[None]:
    """Disable the logger ``name`` inside the block; its previous state returns after."""
    logger = logging.getLogger(name)
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous


@contextmanager
def disable_run_logger() -> Iterator[None]:
    """Disable the flow-run and task-run loggers inside the block (Prefect's)."""
    with disable_logger(f"{ROOT_LOGGER}.flow_runs"), disable_logger(f"{ROOT_LOGGER}.task_runs"):
        yield
