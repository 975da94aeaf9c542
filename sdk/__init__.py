"""Stratoflow's public API: Prefect 3's names, with ``prefect`` replaced by ``sdk``.

from sdk import flow, task

@task(retries=3, retry_delay_seconds=[1, 2, 4])
def extract(n: int) -> int: ...

@flow(log_prints=True)
def etl(count: int = 3) -> list[int]:
    return [f.result() for f in extract.map(range(count))]
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

from runtime.engine.context import tags
from runtime.engine.flows import Flow, flow
from runtime.engine.flows import register_flow_extension as _register_flow_extension
from runtime.engine.futures import PrefectFuture, PrefectFutureList
from runtime.engine.inputs import allow_failure, unmapped
from runtime.engine.runlogs import get_run_logger
from runtime.engine.tasks import Task, task
from runtime.states import State
from sdk import not_supported as _not_supported
from sdk.client import get_client
from sdk.flow_runs import (
    apause_flow_run,
    aresume_flow_run,
    asuspend_flow_run,
    pause_flow_run,
    resume_flow_run,
    suspend_flow_run,
)
from sdk.serve import serve


def _deploy(flow: Flow[..., object], *args: object, **kwargs: object) -> object:
    from sdk.deployments.deploy import deploy_flow

    return deploy_flow(flow, *args, **kwargs)  # type: ignore[arg-type]


def _from_source(source: object, entrypoint: str) -> Flow[..., object]:
    from sdk.deployments.deploy import flow_from_source

    return flow_from_source(source, entrypoint)  # type: ignore[arg-type]


_register_flow_extension("deploy", _deploy)
_register_flow_extension("from_source", _from_source)
_not_supported.install()  # Prefect modules Stratoflow lacks: a clear error on import
__getattr__ = _not_supported.module_getattr(__name__)

try:
    __version__: str = _distribution_version("stratoflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Flow",
    "PrefectFuture",
    "PrefectFutureList",
    "State",
    "Task",
    "__version__",
    "allow_failure",
    "apause_flow_run",
    "aresume_flow_run",
    "asuspend_flow_run",
    "flow",
    "get_client",
    "get_run_logger",
    "pause_flow_run",
    "resume_flow_run",
    "serve",
    "suspend_flow_run",
    "tags",
    "task",
    "unmapped",
]
