"""Domain errors raised by the stores and services (mapped to HTTP statuses by the API)."""

from __future__ import annotations

from typing import Any


class StratoflowError(Exception):
    """Base class of every error Stratoflow raises on purpose."""

    status_code = 500
    error_type = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(StratoflowError):
    """The named object does not exist."""

    status_code = 404
    error_type = "not_found"


class AlreadyExists(StratoflowError):
    """An object with that name already exists."""

    status_code = 409
    error_type = "already_exists"


class Conflict(StratoflowError):
    """A conditional write lost: the object changed since it was read."""

    status_code = 409
    error_type = "conflict"


class InvalidInput(StratoflowError):
    """The request is well-formed but its values are not acceptable."""

    status_code = 422
    error_type = "validation_error"


class LimitExceeded(StratoflowError):
    """No concurrency slot is free (or the request can never fit the limit)."""

    status_code = 429
    error_type = "limit_exceeded"


class BadRequest(StratoflowError):
    """A malformed value the schema cannot catch (e.g. a cursor this API did not return)."""

    status_code = 400
    error_type = "bad_request"


class TransitionRejected(Conflict):
    """The orchestration rules refused a proposed state (REJECT or ABORT).

    ``details`` holds ``status``, ``reason`` and ``state`` (the run's current state, JSON).
    """

    error_type = "transition_rejected"


class ItemTooLarge(StratoflowError):
    """What was to be stored can never fit in a DynamoDB item (400 KB), even trimmed."""

    status_code = 413
    error_type = "item_too_large"


class TransactionConflict(Conflict):
    """DynamoDB cancelled a transaction for a concurrent write to the same items: retry."""

    error_type = "transaction_conflict"


class ResultNotFound(NotFound):
    """A result reference points at an S3 object (or bucket) that does not exist."""

    error_type = "result_not_found"


class CacheLockLost(Conflict):
    """``write`` found the key locked by someone else (the caller's lock expired and was taken)."""


class CacheKeyLocked(Conflict):
    """Another owner holds a live lock on the key: it cannot be taken over before it expires."""

    error_type = "cache_key_locked"
