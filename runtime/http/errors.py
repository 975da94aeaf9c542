"""The HTTP API's error taxonomy: one :class:`ApiError` subclass per error the API answers.

Every error response becomes the class chosen by the body's ``error.type``
(else by status). Each subclasses the matching ``runtime.errors`` class, so
``except runtime.errors.NotFound`` catches an API 404 as it catches a store's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runtime import errors
from runtime.models import OrchestrationResult
from runtime.states import State

__all__ = [
    "AlreadyExists",
    "ApiConnectionError",
    "ApiError",
    "BadRequest",
    "CacheLockLost",
    "Conflict",
    "LimitExceeded",
    "NotFound",
    "ResultNotFound",
    "ServerError",
    "Throttled",
    "TransitionRejected",
    "Unauthorized",
    "ValidationError",
    "error_from_response",
    "unreachable_api",
]


class ApiError(errors.StratoflowError):
    """An error response of the API: ``status``, ``type``, ``message`` and ``details``.

    ``status`` is the HTTP status (0 when no response arrived); ``type`` the
    body's ``error.type`` (``not_found``, ``validation_error``, ...).
    """

    retryable = False

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.details: dict[str, Any] = dict(details or {})
        self.status_code = status
        self.error_type = type

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.type, self.message, self.details))

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"


class NotFound(ApiError, errors.NotFound):
    """404: the object does not exist."""


class ResultNotFound(NotFound, errors.ResultNotFound):
    """404 ``result_not_found``: a result reference points at a missing S3 object."""


class AlreadyExists(ApiError, errors.AlreadyExists):
    """409 ``already_exists``."""


class Conflict(ApiError, errors.Conflict):
    """409 ``conflict``: the object changed under the request."""


class CacheLockLost(Conflict, errors.CacheLockLost):
    """409 on ``PUT /cache/{key}``: another owner took the key over; nothing was written."""


class TransitionRejected(Conflict, errors.TransitionRejected):
    """409 ``transition_rejected``: the rules refused the proposed state.

    ``state`` is the run's current state, ``result`` the refusal as an
    :class:`~runtime.models.OrchestrationResult` (status REJECT or ABORT).
    """

    @property
    def state(self) -> State | None:
        """The run's current state (None if the server did not send it)."""
        raw = self.details.get("state")
        return State.model_validate(raw) if isinstance(raw, dict) else None

    @property
    def result(self) -> OrchestrationResult:
        """The refusal as an orchestration result."""
        status = self.details.get("status")
        state = self.state
        if state is None:
            raise ValueError("the rejection carries no current state")
        return OrchestrationResult(
            status=status if status in ("REJECT", "ABORT") else "REJECT",
            state=state,
            reason=self.details.get("reason") or self.message,
        )


class ValidationError(ApiError, errors.InvalidInput):
    """422 ``validation_error``: ``field`` names the first bad field (``details.errors``)."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Every bad field: ``{"loc": [...], "msg": ..., "type": ...}``."""
        found = self.details.get("errors")
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []

    @property
    def loc(self) -> list[str]:
        """Where the first error is, e.g. ``["body", "flow_name"]``."""
        for err in self.errors:
            loc = err.get("loc")
            if isinstance(loc, list) and loc:
                return [str(p) for p in loc]
        return []

    @property
    def field(self) -> str | None:
        """The first bad field, dotted, without the ``body``/``query``/... part."""
        loc = self.loc
        if loc:
            parts = (
                loc[1:] if loc[0] in ("body", "query", "path", "header") and len(loc) > 1 else loc
            )
            return ".".join(parts)
        named = self.details.get("field")
        return str(named) if named is not None else None


class BadRequest(ApiError, errors.BadRequest):
    """400 ``bad_request``: a malformed value (e.g. a cursor this API did not return)."""


class Unauthorized(ApiError):
    """401 or 403: missing or wrong credentials (token, or SigV4 signature)."""


class Throttled(ApiError):
    """429 ``throttled``: still throttled after every retry."""

    retryable = True


class LimitExceeded(ApiError, errors.LimitExceeded):
    """429 ``limit_exceeded``: a concurrency request that can never fit (never retried)."""


class ServerError(ApiError):
    """5xx: still failing after every retry."""

    retryable = True


class ApiConnectionError(ApiError):
    """No response: connecting failed or timed out after every retry (``status`` 0)."""

    retryable = True


_BY_TYPE: dict[str, type[ApiError]] = {
    "not_found": NotFound,
    "result_not_found": ResultNotFound,
    "already_exists": AlreadyExists,
    "conflict": Conflict,
    "transition_rejected": TransitionRejected,
    "validation_error": ValidationError,
    "serialization_error": ValidationError,
    "bad_request": BadRequest,
    "unauthorized": Unauthorized,
    "forbidden": Unauthorized,
    "throttled": Throttled,
    "limit_exceeded": LimitExceeded,
}
_BY_STATUS: dict[int, tuple[type[ApiError], str]] = {
    400: (BadRequest, "bad_request"),
    401: (Unauthorized, "unauthorized"),
    403: (Unauthorized, "forbidden"),
    404: (NotFound, "not_found"),
    409: (Conflict, "conflict"),
    422: (ValidationError, "validation_error"),
    429: (Throttled, "throttled"),
}


def unreachable_api(exc: ApiConnectionError, api_url: str) -> ApiConnectionError:
    """One line that says how to fix it, instead of a chain of urllib3 tracebacks."""
    error = ApiConnectionError(
        exc.status,
        exc.type,
        f"cannot reach the Stratoflow API at {api_url} ({exc.message}): start it with "
        "`stratoflow dev` or `stratoflow api serve`, or fix STRATOFLOW_API_URL",
        exc.details,
    )
    error.original = exc  # type: ignore[attr-defined]
    return error


def error_from_response(status: int, body: bytes) -> ApiError:
    """The typed error for an error response (our error shape, API Gateway's, or text)."""
    message, type_ = "", ""
    details: dict[str, Any] = {}
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        type_ = str(err.get("type") or "")
        message = str(err.get("message") or "")
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
    elif isinstance(doc, dict) and "message" in doc:  # API Gateway's own errors
        message = str(doc.get("message") or "")
    elif body:
        message = body[:500].decode("utf-8", "replace")
    cls = _BY_TYPE.get(type_)
    if cls is None:
        cls, default_type = _BY_STATUS.get(status, (ApiError, "error"))
        if status >= 500:
            cls, default_type = ServerError, "internal"
        type_ = type_ or default_type
    return cls(status, type_, message or f"HTTP {status}", details)
