"""One JSON error shape for every failure: ``{"error": {"type", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.event_handler import Response

logger = logging.getLogger("stratoflow.api")


def error_response(status: int, type_: str, message: str, details: Any = None) -> Response[Any]:
    """A JSON error response with the project's error shape."""
    return Response(
        status_code=status,
        content_type="application/json",
        body={"error": {"type": type_, "message": message, "details": details or {}}},
    )


def backend_error_response(exc: Exception) -> Response[Any] | None:
    """A 4xx for what DynamoDB refused as invalid (an item over 400 KB: 413), else None.

    The stores raise ``ItemTooLarge`` themselves; this catches any other
    ``ValidationException`` a request could still provoke, so it is never a 500.
    """
    error = getattr(exc, "response", {}).get("Error", {})
    if error.get("Code") != "ValidationException":
        return None
    message = str(error.get("Message") or "invalid request")
    if "size" in message.lower():
        return error_response(
            413, "item_too_large", f"{message} (a DynamoDB item holds at most 400 KB)"
        )
    return error_response(422, "validation_error", f"the backend refused the request: {message}")


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """``body.flow_name: Field required; query.limit: ...``: names every bad field."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else err.get("msg", "invalid"))
    return "; ".join(parts) or "invalid request"


def clean_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without pydantic's doc URLs and unserializable context."""
    out = []
    for err in errors:
        item = {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": err.get("msg"),
            "type": err.get("type"),
        }
        out.append(item)
    return out
