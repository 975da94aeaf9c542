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
