"""Run logs for flow authors: ``get_run_logger()`` and ``log_prints``.

Records logged through a run logger carry the flow run id and task run id; a
handler on the ``stratoflow`` logger hands them to the engine client, which
ships them in batches (and flushes them before the flow run's final state).
They are also printed on the console, as Prefect does.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
from typing import Any

from runtime.engine.context import MissingContextError as MissingContextError  # its old home
from runtime.engine.context import current_flow_run, current_task_run
from runtime.logship import RunLogHandler

ROOT_LOGGER = "stratoflow"
_setup_lock = threading.Lock()
_is_setup = False
_original_print = builtins.print


class _EngineLogHandler(RunLogHandler):
    """Routes run records to the engine client of the run that logged them."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.to_log_record(record)
            if line is None:
                return
            ctx = current_flow_run()
            if ctx is not None:
                ctx.client.emit_log(line)
                return
            from runtime.engine import backend

            if backend._client is not None:
                backend._client.emit_log(line)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Shipping is flushed by the engine at the end of each flow run."""


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        run = getattr(record, "run_name", None)
        prefix = f"{run} - " if run else ""
        record.message = record.getMessage()
        text = (
            f"{self.formatTime(record, '%H:%M:%S')}.{int(record.msecs):03d} | "
            f"{record.levelname:<7} | {record.name} - {prefix}{record.message}"
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging() -> None:
    """Install the run-log handler, the console handler and the ``log_prints`` hook, once."""
    global _is_setup
    with _setup_lock:
        if _is_setup:
            return
        from runtime.settings import get_settings

        root = logging.getLogger(ROOT_LOGGER)
        root.setLevel(logging.DEBUG)
        root.addHandler(_EngineLogHandler())
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(get_settings().logging_level.upper())
        console.setFormatter(_ConsoleFormatter())
        root.addHandler(console)
        root.propagate = False
        builtins.print = _print
        _is_setup = True


def _print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    """``print`` that becomes an INFO run log line inside runs with ``log_prints=True``."""
    task_ctx = current_task_run()
    flow_ctx = current_flow_run()
    enabled = (
        task_ctx.log_prints if task_ctx is not None else bool(flow_ctx and flow_ctx.log_prints)
    )
    if not enabled or file not in (None, sys.stdout):
        _original_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    get_run_logger().info((sep if sep is not None else " ").join(str(a) for a in args))


def run_loggers_disabled() -> bool:
    """True while both run loggers are disabled (``sdk.logging.disable_run_logger()``)."""
    return (
        logging.getLogger(f"{ROOT_LOGGER}.flow_runs").disabled
        and logging.getLogger(f"{ROOT_LOGGER}.task_runs").disabled
    )


def _disabled_logger() -> logging.Logger:
    logger = logging.getLogger(f"{ROOT_LOGGER}.null")
    logger.disabled = True
    return logger


def get_run_logger(**extra: Any) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose records are stored with the current flow run (and task run).

    Raises :class:`MissingContextError` outside a flow or task run (unless the run
    loggers are disabled: then a logger that drops everything, as in Prefect).
    """
    setup_logging()
    task_ctx = current_task_run()
    flow_ctx = current_flow_run()
    if task_ctx is not None:
        logger = logging.getLogger(f"{ROOT_LOGGER}.task_runs")
        context = {
            "flow_run_id": task_ctx.task_run.flow_run_id,
            "task_run_id": task_ctx.task_run.id,
            "run_name": f"Task run {task_ctx.task_run.name!r}",
        }
    elif flow_ctx is not None:
        logger = logging.getLogger(f"{ROOT_LOGGER}.flow_runs")
        context = {
            "flow_run_id": flow_ctx.flow_run.id,
            "task_run_id": None,
            "run_name": f"Flow run {flow_ctx.flow_run.name!r}",
        }
    elif run_loggers_disabled():  # Prefect: disable_run_logger() gives a silent logger
        return logging.LoggerAdapter(_disabled_logger(), dict(extra))
    else:
        raise MissingContextError(
            "get_run_logger() was called outside a flow or task run: "
            "use logging.getLogger(...) there"
        )
    return logging.LoggerAdapter(logger, {**context, **extra})
