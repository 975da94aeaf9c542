"""``sdk.futures``: futures of submitted task runs (Prefect's ``prefect.futures``)."""

from runtime.engine.futures import (
    DoneAndNotDoneFutures,
    PrefectFuture,
    PrefectFutureList,
    as_completed,
    wait,
)

__all__ = ["DoneAndNotDoneFutures", "PrefectFuture", "PrefectFutureList", "as_completed", "wait"]
