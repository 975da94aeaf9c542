"""The maintenance sweep's Lambda entry point, run by an EventBridge rate rule in AWS.

Thin: it takes the stores (created once per warm container), runs
:func:`runtime.services.sweep.sweep` once, logs the report as one structured line,
counts what it changed as CloudWatch metrics (EMF), and returns the report. The
event itself (an EventBridge scheduled event) carries nothing the sweep needs.
Locally, ``stratoflow dev`` runs the same service in a loop instead.
"""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from handlers.deps import get_stores
from runtime.services.sweep import sweep

SERVICE = "stratoflow-maintenance"
METRICS_NAMESPACE = "Stratoflow"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

#: Report counts published as metrics (the ones an operator watches).
METRIC_NAMES = {
    "crashed": "RunsCrashed",
    "retried": "RunsRetriedAfterCrash",
    "late": "RunsMarkedLate",
    "enqueued": "RunsEnqueued",
    "leases_reclaimed": "LeasesReclaimed",
    "dead_lettered": "RunsDeadLettered",
}


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sweep once; return the report (counts per action, and errors)."""
    report = sweep(get_stores())
    data = report.as_dict()
    for field, metric in METRIC_NAMES.items():
        if data[field]:
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=data[field])
    if report.errors:
        metrics.add_metric(name="SweepErrors", unit=MetricUnit.Count, value=len(report.errors))
        logger.warning("sweep", extra={"report": data})
    else:
        logger.info("sweep", extra={"report": data})
    return data
