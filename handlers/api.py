"""The orchestration API: one Powertools REST resolver behind API Gateway (proxy events).

``lambda_handler`` is the Lambda entry point; ``app`` is also served on a laptop
by :mod:`handlers.local_gateway`. Routes live in ``handlers/routes/`` (one
Router per resource) and call ``runtime``; this module maps errors.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import ValidationError

from handlers.errors import (
    backend_error_response,
    clean_errors,
    describe_validation,
    error_response,
)
from handlers.routes import concurrency, health, registry, results, runs
from runtime.errors import StratoflowError
from runtime.jsonvalues import JsonValueError, loads_checked

API_TITLE = "Stratoflow API"
API_VERSION = "0.1.0"

logger = logging.getLogger("stratoflow.api")


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
for module in (health, runs, registry, concurrency, results):
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
    return error_response(
        422, "validation_error", describe_validation(errors), {"errors": clean_errors(errors)}
    )


@app.exception_handler(ValidationError)
def _invalid_model(exc: ValidationError) -> Response[Any]:
    errors = [dict(e) for e in exc.errors()]
    return error_response(
        422, "validation_error", describe_validation(errors), {"errors": clean_errors(errors)}
    )


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(exc: RequestUnsupportedContentType) -> Response[Any]:
    return error_response(
        415, "unsupported_media_type", "send the request body as application/json"
    )


@app.exception_handler(StratoflowError)
def _domain_error(exc: StratoflowError) -> Response[Any]:
    return error_response(exc.status_code, exc.error_type, exc.message, exc.details)


@app.exception_handler(ValueError)
def _bad_value(exc: ValueError) -> Response[Any]:
    return error_response(400, "bad_request", str(exc))


@app.not_found
def _not_found(exc: Exception) -> Response[Any]:
    return error_response(404, "not_found", "no such route")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[Any]:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code in (
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
    ):
        return error_response(429, "throttled", "the backend is throttling: retry with backoff")
    refused = backend_error_response(exc)
    if refused is not None:
        return refused
    request_id = app.current_event.request_context.request_id if app.current_event else None
    logger.exception("unhandled error (request %s)", request_id)
    return error_response(500, "internal", f"internal error (request id {request_id})")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point for API Gateway REST proxy events."""
    return app.resolve(event, context)
