"""``sdk.deployments`` (Prefect's ``prefect.deployments``): deploying flows."""

from sdk import not_supported as _not_supported
from sdk.deployments.deploy import deploy_flow, flow_from_source

__getattr__ = _not_supported.module_getattr(__name__)

__all__ = ["deploy_flow", "flow_from_source"]
