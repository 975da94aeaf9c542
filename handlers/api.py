"""The orchestration API: one Powertools REST resolver behind API Gateway (proxy events).

``lambda_handler`` is the Lambda entry point; ``app`` is also served on a laptop
by :mod:`handlers.local_gateway`. Routes live in ``handlers/routes/`` (one
Router per resource) and call ``runtime``; this module maps errors.

Powertools, used the usual way:

* :data:`logger` writes structured JSON lines carrying API Gateway's request id as the
  correlation id (``correlation_paths.API_GATEWAY_REST``), one line per request;
* :data:`tracer` traces the handler in Lambda; outside Lambda (no ``LAMBDA_TASK_ROOT``,
  or ``POWERTOOLS_TRACE_DISABLED=true``) Powertools disables it, so local runs and tests
  never reach for X-Ray;
* :data:`metrics` counts, where errors become responses, the refusals an operator
  watches (:data:`REFUSAL_METRICS`), flushed as CloudWatch EMF (a JSON line on stdout)
  at the end of each invocation.

The stores (boto3 clients) are created once per container by :func:`handlers.deps.get_stores`
and reused by every warm invocation.
"""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from handlers.errors import (
    backend_error_response,
    clean_errors,
    describe_validation,
    error_response,
)
from handlers.routes import concurrency, health, pauses, registry, results, runs
from runtime.errors import StratoflowError
from runtime.jsonvalues import JsonValueError, loads_checked

API_TITLE = "Stratoflow API"
API_VERSION = "0.1.0"

SERVICE = "stratoflow-api"
"""Powertools' service name (``POWERTOOLS_SERVICE_NAME`` overrides it)."""

METRICS_NAMESPACE = "Stratoflow"
"""CloudWatch namespace of the API's metrics (``POWERTOOLS_METRICS_NAMESPACE`` overrides it)."""

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

# Most requests refuse nothing and so publish no metric: Powertools' documented way to
# keep its "No application metrics to publish" warning out of every such invocation.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

#: The metric an error response counts, by HTTP status: bad input refused (400, 415, 422),
#: conflicts (409: lost races, locked keys, existing names), backend throttling (429) and
#: item-size refusals (413). Transition rejections (a 409 of type ``transition_rejected``)
#: are also counted on their own as ``TransitionsRejected``.
REFUSAL_METRICS: dict[int, str] = {
    400: "Rejections",
    415: "Rejections",
    422: "Rejections",
    409: "Conflicts",
    429: "Throttles",
    413: "ItemSizeRefusals",
}


def count_refusal(status: int, type_: str) -> None:
    """Count an error response in the matching metric of :data:`REFUSAL_METRICS`."""
    name = REFUSAL_METRICS.get(status)
    if name is not None:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if type_ == "transition_rejected":
        metrics.add_metric(name="TransitionsRejected", unit=MetricUnit.Count, value=1)


def refused(status: int, type_: str, message: str, details: Any = None) -> Response[Any]:
    """The error response, counted (:func:`count_refusal`)."""
    count_refusal(status, type_)
    return error_response(status, type_, message, details)


def json_body(text: str) -> Any:
    """Parse a request body: malformed JSON, NaN/Infinity/``1e999999`` and nesting deeper
    than 64 levels are a 422 naming where (``body.parameters.x: ...``), never a 500."""
    try:
        return loads_checked(text)
    except JsonValueError as exc:
        loc = ("body", *exc.path)
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": loc, "msg": exc.reason, "input": {}}]
        ) from None


app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=json_body)
for module in (health, runs, registry, concurrency, results, pauses):
    app.include_router(module.router)
app.enable_swagger(path="/docs", title=API_TITLE, version=API_VERSION)


@app.get("/openapi.json", include_in_schema=False)
def openapi_json() -> Response[Any]:
    """The OpenAPI document of this API (also committed as docs/openapi.json)."""
    return Response(
        status_code=200,
        content_type="application/json",
        body=app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION),
    )


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response[Any]:
    errors = list(exc.errors())
    return refused(
        422, "validation_error", describe_validation(errors), {"errors": clean_errors(errors)}
    )


@app.exception_handler(ValidationError)
def _invalid_model(exc: ValidationError) -> Response[Any]:
    errors = [dict(e) for e in exc.errors()]
    return refused(
        422, "validation_error", describe_validation(errors), {"errors": clean_errors(errors)}
    )


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(exc: RequestUnsupportedContentType) -> Response[Any]:
    return refused(415, "unsupported_media_type", "send the request body as application/json")


@app.exception_handler(StratoflowError)
def _domain_error(exc: StratoflowError) -> Response[Any]:
    return refused(exc.status_code, exc.error_type, exc.message, exc.details)


@app.exception_handler(ValueError)
def _bad_value(exc: ValueError) -> Response[Any]:
    return refused(400, "bad_request", str(exc))


@app.not_found
def _not_found(exc: Exception) -> Response[Any]:
    return refused(404, "not_found", "no such route")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[Any]:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code in (
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
    ):
        return refused(429, "throttled", "the backend is throttling: retry with backoff")
    backend_refusal = backend_error_response(exc)
    if backend_refusal is not None:
        count_refusal(backend_refusal.status_code, "")
        return backend_refusal
    request_id = app.current_event.request_context.request_id if app.current_event else None
    logger.exception("unhandled error (request %s)", request_id)
    return refused(500, "internal", f"internal error (request id {request_id})")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point for API Gateway REST proxy events."""
    response = app.resolve(event, context)
    logger.info(
        "request",
        extra={
            "http_method": event.get("httpMethod"),
            "path": event.get("path"),
            "status_code": response.get("statusCode"),
        },
    )
    return response
