"""``sdk.deployments`` (Prefect's ``prefect.deployments``): deploy flows and run deployments."""

from sdk import not_supported as _not_supported
from sdk.deployments.deploy import deploy_flow, flow_from_source
from sdk.deployments.run import arun_deployment, run_deployment

__getattr__ = _not_supported.module_getattr(__name__)

__all__ = ["arun_deployment", "deploy_flow", "flow_from_source", "run_deployment"]
