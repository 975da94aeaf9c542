"""``sdk.deployments``: deploy flows and run deployments (Prefect's ``prefect.deployments``)."""

from sdk.deployments.run import arun_deployment, run_deployment

__all__ = ["arun_deployment", "run_deployment"]
