"""``sdk.logging``: ``get_run_logger`` (Prefect's ``prefect.logging``)."""

from runtime.engine.runlogs import get_run_logger

__all__ = ["get_run_logger"]
