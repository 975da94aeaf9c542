"""``sdk.flows``: the flow decorator (Prefect's ``prefect.flows``)."""

from runtime.engine.flows import Flow, flow

__all__ = ["Flow", "flow"]
