"""The HTTP client core of the Stratoflow API (docs/api.md): transport, auth, retries, errors.

:class:`HttpApi` calls the routes the engine needs (runs, task-run records, logs,
limits and leases, results, cache, health) and returns the runtime models;
``sdk.api_client.StratoflowClient`` extends it with the rest of the API
(flows, deployments, work pools). It lives in ``runtime`` so that the engine's
:class:`~runtime.engine.api_client.ApiEngineClient` can use it without importing
``sdk`` (dependencies point ``sdk -> runtime``).

Transport (:class:`ApiTransport`)
    One ``urllib3.PoolManager`` per client (thread-safe, pooled keep-alive
    connections), JSON bodies. An idempotent request (GET, PUT, DELETE, one with an
    ``Idempotency-Key``, or one the caller marks so because it carries a
    client-chosen id) that gets 429 or any 5xx, or that fails to connect, times out
    or loses its connection, is retried up to ``retries`` times with exponential
    backoff and full jitter (``backoff * 2**n``, at most ``max_backoff`` seconds),
    or after the ``Retry-After`` the server sent (at most ``max_retry_after``).
    Any other request is retried only when it surely was not applied: the
    connection could not be made, or the answer was 429 or 503; never after a
    read timeout, a dropped connection or another 5xx, which may come after the
    server did the work (the error then says so).
    A 429 ``limit_exceeded`` (a concurrency request that can never fit) and every
    other 4xx are never retried.

Auth
    With ``sign`` (default: on unless the URL is on 127.0.0.1/localhost or a
    token is given), every attempt is SigV4-signed for ``execute-api`` with
    botocore's credential chain, as API Gateway's IAM auth requires. With a
    ``token`` (or ``STRATOFLOW_API_TOKEN``) every request sends
    ``Authorization: Bearer <token>`` (the local gateway).

Errors
    Every error response becomes an :class:`ApiError` subclass chosen by the
    body's ``error.type`` (else by status). Each subclasses the matching
    ``runtime.errors`` class, so ``except runtime.errors.NotFound`` catches an
    API 404 as it catches a store's.

Retrying writes is safe: creates without an idempotency key get a client-chosen
run id (a retry that finds it taken returns that run), proposed states carry
a ``transition_id`` (a retry whose first attempt was applied is recognised), and
leases, log lines and results get client-chosen ids (a repeat returns the same
lease, overwrites the same lines, writes the same object).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import urllib3
from pydantic import BaseModel

from runtime import errors
from runtime.models import (
    ConcurrencyLimit,
    ConcurrencyLimitCreate,
    FlowRun,
    FlowRunCreate,
    Lease,
    LogRecord,
    OrchestrationResult,
    Page,
    TaskRun,
    TaskRunCreate,
    new_id,
)
from runtime.payload_auth import PayloadKey, load_payload_key, needs_mac
from runtime.results import ResultNotFound as _StoreResultNotFound
from runtime.serializers import get_serializer
from runtime.states import ResultRef, State, StateType
from runtime.stores.cache import CacheLockLost as _StoreCacheLockLost
from runtime.stores.cache import CacheRecord, LockAttempt
from runtime.stores.logs import new_log_id

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "ApiResponse",
    "ApiTransport",
    "BadRequest",
    "CacheLockLost",
    "Conflict",
    "HttpApi",
    "LimitExceeded",
    "NotFound",
    "ResultNotFound",
    "ServerError",
    "Throttled",
    "TransitionRejected",
    "Unauthorized",
    "ValidationError",
    "error_from_response",
    "is_local_url",
    "sign_request",
]

T = TypeVar("T", bound=BaseModel)

MAX_TASK_RUN_RECORDS = 100
"""Most task-run snapshots one ``POST /task_runs/records`` carries."""
MAX_LOG_RECORDS = 1000
"""Most log lines one ``POST /logs`` carries."""
SIGV4_SERVICE = "execute-api"
"""The SigV4 service name of API Gateway."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods retried after any transient failure unless the caller says otherwise."""
NOT_APPLIED_STATUSES = frozenset({429, 503})
"""Statuses that say the request was not applied: any request may be retried after them."""

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
_EXECUTE_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_UNRESERVED = "-_.~"  # RFC 3986 unreserved characters: SigV4's canonical encoding


# ----------------------------------------------------------------------------- errors


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


class ResultNotFound(NotFound, _StoreResultNotFound):
    """404 ``result_not_found``: a result reference points at a missing S3 object."""


class AlreadyExists(ApiError, errors.AlreadyExists):
    """409 ``already_exists``."""


class Conflict(ApiError, errors.Conflict):
    """409 ``conflict``: the object changed under the request."""


class CacheLockLost(Conflict, _StoreCacheLockLost):
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


# ----------------------------------------------------------------------------- signing


def is_local_url(url: str) -> bool:
    """True for a URL on this machine (127.0.0.0/8, ::1, localhost)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def region_from_url(url: str) -> str | None:
    """The region of an ``https://<id>.execute-api.<region>.amazonaws.com`` URL."""
    match = _EXECUTE_API_HOST.search((urlsplit(url).hostname or "").lower())
    return match.group(1) if match else None


def sign_request(
    method: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    credentials: Any,
    region: str,
    service: str = SIGV4_SERVICE,
) -> dict[str, str]:
    """``headers`` plus SigV4's (``X-Amz-Date``, ``Authorization``, maybe a session token).

    ``credentials`` has ``access_key``, ``secret_key`` and ``token`` (botocore's
    ``Credentials`` or their frozen form). The URL must already be encoded as it
    will be sent (query values percent-encoded with SigV4's unreserved set).
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method.upper(), url=url, data=body or b"", headers=dict(headers))
    SigV4Auth(credentials, service, region).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


# ----------------------------------------------------------------------------- transport


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def encode_query(params: Mapping[str, Any]) -> str:
    """``a=1&tag=x&tag=y``: None values left out, lists repeated, SigV4-canonical encoding."""
    pairs: list[str] = []
    for key, value in params.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple | set | frozenset) else [value]
        for item in values:
            pairs.append(
                f"{quote(key, safe=_UNRESERVED)}={quote(_query_value(item), safe=_UNRESERVED)}"
            )
    return "&".join(pairs)


def segment(value: str) -> str:
    """One path segment, percent-encoded (ids, names and cache keys)."""
    if not value:
        raise ValueError("a path segment must not be empty")
    return quote(str(value), safe=_UNRESERVED)


@dataclass(frozen=True)
class ApiResponse:
    """A successful response: its status and JSON body (None for an empty body)."""

    status: int
    body: Any
    headers: Mapping[str, str]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ApiTransport:
    """Sends JSON requests to the API: auth, connection pooling, retries, typed errors."""

    def __init__(
        self,
        api_url: str | None = None,
        *,
        token: str | None = None,
        sign: bool | None = None,
        region: str | None = None,
        timeout: float = 30,
        retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        max_retry_after: float = 60.0,
        pool_maxsize: int = 32,
        credentials: Any = None,
    ) -> None:
        from runtime.settings import get_settings

        settings = get_settings()
        url = api_url or settings.api_url
        if not url:
            raise ValueError("no API URL: pass api_url or set STRATOFLOW_API_URL")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the API URL must be http(s)://host[:port][/stage]: {url!r}")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.api_url = url.rstrip("/")
        self.token = (
            token if token is not None else (os.environ.get("STRATOFLOW_API_TOKEN") or None)
        )
        if sign is None:
            sign = self.token is None and not is_local_url(self.api_url)
        if sign and self.token is not None:
            raise ValueError("a request is either SigV4-signed or sends a bearer token, not both")
        self.sign = sign
        self.region = (
            region or region_from_url(self.api_url) or settings.region or _botocore_region()
        )
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._credentials = credentials
        self._credentials_lock = threading.Lock()
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_maxsize,
            retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
        )
        self._sleep: Callable[[float], None] = time.sleep
        self._random = random.Random()

    # ------------------------------------------------------------------ auth

    def credentials(self) -> Any:
        """The AWS credentials requests are signed with (botocore's chain, resolved once)."""
        with self._credentials_lock:
            if self._credentials is None:
                import botocore.session

                found = botocore.session.Session().get_credentials()
                if found is None:
                    raise Unauthorized(
                        0,
                        "unauthorized",
                        "no AWS credentials to sign API requests with: configure them "
                        "(environment, profile, role) or pass sign=False / a token",
                    )
                self._credentials = found
            creds = self._credentials
        freeze = getattr(creds, "get_frozen_credentials", None)
        return freeze() if freeze is not None else creds

    def _headers(
        self, method: str, url: str, data: bytes | None, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.sign:
            headers = sign_request(
                method, url, data, headers, credentials=self.credentials(), region=self.region
            )
        return headers

    # ------------------------------------------------------------------ requests

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        """The full URL of ``path`` (already encoded) with ``query``."""
        qs = encode_query(query or {})
        return f"{self.api_url}{path}" + (f"?{qs}" if qs else "")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (full jitter, or Retry-After)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        cap = min(self.max_backoff, self.backoff * 2**attempt)
        return self._random.uniform(cap / 2, cap)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> ApiResponse:
        """Send one request (retrying what is retryable); the response, or a typed ApiError.

        ``idempotent`` says whether repeating the request is harmless (see the module
        docstring); None decides by the method and an ``Idempotency-Key`` header.
        """
        url = self.url(path, query)
        data = None if json_body is None else json.dumps(_jsonable(json_body)).encode()
        if idempotent is None:
            idempotent = method.upper() in IDEMPOTENT_METHODS or any(
                k.lower() == "idempotency-key" for k in headers or {}
            )
        attempt = 0
        while True:
            sent = self._headers(method, url, data, headers)
            try:
                response = self._pool.request(
                    method, url, body=data, headers=sent, redirect=False, retries=False
                )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if isinstance(exc, urllib3.exceptions.LocationValueError):
                    raise
                # A connection never made sent nothing; anything later (a read timeout,
                # a dropped connection) may come after the server applied the request.
                unsafe = not idempotent and not isinstance(
                    exc, urllib3.exceptions.ConnectTimeoutError
                )
                if attempt >= self.retries or unsafe:
                    note = (
                        "; not retried: the server may have applied it, and repeating "
                        "this request is not safe"
                        if unsafe
                        else ""
                    )
                    raise ApiConnectionError(
                        0,
                        "connection_error",
                        f"{method} {self.api_url}{path}: no response after "
                        f"{attempt + 1} attempt(s): {exc}{note}",
                    ) from exc
                wait = self.delay(attempt, None)
            else:
                if response.status < 400:
                    raw = response.data
                    body = json.loads(raw) if raw else None
                    return ApiResponse(response.status, body, response.headers)
                error = error_from_response(response.status, response.data)
                retry = response.status >= 500 or (
                    response.status == 429 and not isinstance(error, LimitExceeded)
                )
                if not idempotent and response.status not in NOT_APPLIED_STATUSES:
                    retry = False
                if not retry or attempt >= self.retries:
                    raise error
                wait = self.delay(attempt, _retry_after(response.headers))
            attempt += 1
            self._sleep(wait)

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.clear()


def _botocore_region() -> str:
    try:
        import botocore.session

        return str(botocore.session.Session().get_config_variable("region") or "us-east-1")
    except Exception:
        return "us-east-1"


# ----------------------------------------------------------------------------- the API


def _page(model: type[T], body: Any) -> Page[T]:
    return Page[model](  # type: ignore[valid-type]
        items=[model.model_validate(item) for item in body.get("items", [])],
        next_cursor=body.get("next_cursor"),
    )


def _state_body(state: State) -> tuple[dict[str, Any], str]:
    """The state as JSON with a ``transition_id`` (a fresh one unless it has one)."""
    doc = state.model_dump(mode="json")
    tid = state.details.transition_id or str(uuid.uuid4())
    doc["details"]["transition_id"] = tid
    return doc, tid


def _states(values: Iterable[str | StateType] | str | StateType | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):  # StateType is a str too
        return [str(values.value if isinstance(values, StateType) else values)]
    return [str(v.value if isinstance(v, StateType) else v) for v in values]


class HttpApi:
    """The API's run, log, concurrency, result and cache routes, returning runtime models.

    Everything the engine needs; ``sdk.api_client.StratoflowClient`` adds the rest.
    Thread-safe: one instance serves every thread of a process.
    """

    def __init__(
        self,
        api_url: str | None = None,
        *,
        token: str | None = None,
        sign: bool | None = None,
        region: str | None = None,
        timeout: float = 30,
        retries: int = 4,
        transport: ApiTransport | None = None,
    ) -> None:
        self.transport = transport or ApiTransport(
            api_url, token=token, sign=sign, region=region, timeout=timeout, retries=retries
        )

    @property
    def api_url(self) -> str:
        """The API's base URL."""
        return self.transport.api_url

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The body of ``transport.request(...)``; pass ``idempotent=True`` for a POST
        that carries a client-chosen id (it may then be retried after a lost response)."""
        try:
            return self.transport.request(method, path, **kwargs).body
        except ApiConnectionError as exc:
            raise unreachable_api(exc, self.api_url) from None

    def close(self) -> None:
        """Close pooled connections."""
        self.transport.close()

    def __enter__(self) -> HttpApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ health

    def health(self, deep: bool = False) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok", "version": ...}``."""
        return dict(self._call("GET", "/health", query={"deep": deep or None}))

    # ------------------------------------------------------------------ flow runs

    def create_flow_run(
        self, request: FlowRunCreate, idempotency_key: str | None = None
    ) -> FlowRun:
        """``POST /flow_runs``; with an idempotency key a repeat returns the first run.

        Without a key or an id, the client picks the id, so that a retry after a
        lost response returns the run the first attempt created.
        """
        return FlowRun.model_validate(self._create("/flow_runs", request, idempotency_key))

    def read_flow_run(self, flow_run_id: str) -> FlowRun:
        """``GET /flow_runs/{id}`` (NotFound when absent)."""
        return FlowRun.model_validate(self._call("GET", f"/flow_runs/{segment(flow_run_id)}"))

    def list_flow_runs(
        self,
        *,
        flow_name: str | None = None,
        deployment_id: str | None = None,
        parent_flow_run_id: str | None = None,
        work_pool_name: str | None = None,
        state_types: Iterable[str | StateType] | str | StateType | None = None,
        state_names: Iterable[str] | str | None = None,
        tags: Iterable[str] | str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[FlowRun]:
        """``GET /flow_runs``: one page, newest first; every given filter must match."""
        query = {
            "flow_name": flow_name,
            "deployment_id": deployment_id,
            "parent_flow_run_id": parent_flow_run_id,
            "work_pool_name": work_pool_name,
            "state_type": _states(state_types),
            "state_name": [state_names] if isinstance(state_names, str) else state_names,
            "tag": [tags] if isinstance(tags, str) else tags,
            "created_after": created_after,
            "created_before": created_before,
            "limit": limit,
            "cursor": cursor,
        }
        return _page(FlowRun, self._call("GET", "/flow_runs", query=_listify(query)))

    def set_flow_run_state(
        self,
        flow_run_id: str,
        state: State,
        force: bool = False,
        *,
        raise_on_reject: bool = False,
        expected_version: int | None = None,
    ) -> OrchestrationResult:
        """``POST /flow_runs/{id}/set_state``: what the rules did.

        A rejection (409 ``transition_rejected``) comes back as a result with status
        REJECT or ABORT and the run's current state, as the engine needs; pass
        ``raise_on_reject=True`` to get :class:`TransitionRejected` instead.
        """
        return self._set_state(
            "flow_run", flow_run_id, state, force, raise_on_reject, expected_version
        )

    def cancel_flow_run(
        self, flow_run_id: str, *, raise_on_reject: bool = False
    ) -> OrchestrationResult:
        """``POST /flow_runs/{id}/cancel``: Cancelled if not started, Cancelling if running.

        A run already final gives a REJECT result (or TransitionRejected with
        ``raise_on_reject=True``).
        """
        try:
            body = self._call("POST", f"/flow_runs/{segment(flow_run_id)}/cancel")
        except TransitionRejected as exc:
            if raise_on_reject or exc.state is None:
                raise
            return exc.result
        return OrchestrationResult.model_validate(body)

    def read_flow_run_states(self, flow_run_id: str) -> list[State]:
        """``GET /flow_runs/{id}/states``: every state, oldest first."""
        body = self._call("GET", f"/flow_runs/{segment(flow_run_id)}/states")
        return [State.model_validate(s) for s in body]

    # ------------------------------------------------------------------ task runs

    def create_task_run(
        self, request: TaskRunCreate, idempotency_key: str | None = None
    ) -> TaskRun:
        """``POST /task_runs`` (idempotent like :meth:`create_flow_run`)."""
        return TaskRun.model_validate(self._create("/task_runs", request, idempotency_key))

    def write_task_run_records(
        self, records: Sequence[tuple[TaskRun, Sequence[State]]] | Sequence[Any]
    ) -> int:
        """``POST /task_runs/records`` in batches of 100: the engine's task-run snapshots.

        ``records`` holds ``(run, history)`` pairs (or ``TaskRunRecord`` objects);
        returns how many were written.
        """
        docs: list[dict[str, Any]] = []
        for record in records:
            if isinstance(record, tuple):
                run, history = record
            else:
                run, history = record.run, record.history
            docs.append(
                {
                    "run": run.model_dump(mode="json"),
                    "history": [s.model_dump(mode="json") for s in (history or [run.state])],
                }
            )
        written = 0
        for start in range(0, len(docs), MAX_TASK_RUN_RECORDS):
            chunk = docs[start : start + MAX_TASK_RUN_RECORDS]
            body = self._call(
                "POST", "/task_runs/records", json_body={"records": chunk}, idempotent=True
            )
            written += int(body.get("written", len(chunk)))
        return written

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """``GET /task_runs/{id}`` (NotFound when absent)."""
        return TaskRun.model_validate(self._call("GET", f"/task_runs/{segment(task_run_id)}"))

    def list_task_runs(
        self,
        *,
        flow_run_id: str | None = None,
        task_key: str | None = None,
        state_types: Iterable[str | StateType] | str | StateType | None = None,
        state_names: Iterable[str] | str | None = None,
        tags: Iterable[str] | str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[TaskRun]:
        """``GET /task_runs``: one page, newest first; every given filter must match."""
        query = {
            "flow_run_id": flow_run_id,
            "task_key": task_key,
            "state_type": _states(state_types),
            "state_name": [state_names] if isinstance(state_names, str) else state_names,
            "tag": [tags] if isinstance(tags, str) else tags,
            "created_after": created_after,
            "created_before": created_before,
            "limit": limit,
            "cursor": cursor,
        }
        return _page(TaskRun, self._call("GET", "/task_runs", query=_listify(query)))

    def read_task_run_states(self, task_run_id: str) -> list[State]:
        """``GET /task_runs/{id}/states``: every state, oldest first."""
        body = self._call("GET", f"/task_runs/{segment(task_run_id)}/states")
        return [State.model_validate(s) for s in body]

    def set_task_run_state(
        self, task_run_id: str, state: State, force: bool = False, *, raise_on_reject: bool = False
    ) -> OrchestrationResult:
        """``POST /task_runs/{id}/set_state`` (rejections as for flow runs)."""
        return self._set_state("task_run", task_run_id, state, force, raise_on_reject)

    # ------------------------------------------------------------------ logs

    def read_logs(
        self,
        flow_run_id: str,
        *,
        task_run_id: str | None = None,
        level_ge: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[LogRecord]:
        """``GET /flow_runs/{id}/logs``: one page of log lines in time order."""
        query = {"task_run_id": task_run_id, "level_ge": level_ge, "limit": limit, "cursor": cursor}
        body = self._call("GET", f"/flow_runs/{segment(flow_run_id)}/logs", query=query)
        return _page(LogRecord, body)

    def write_logs(self, records: Sequence[LogRecord]) -> int:
        """``POST /logs`` in batches of 1000; returns how many lines were written.

        A record without an ``id`` gets one here, so a retry after a lost response
        overwrites the same lines instead of storing them twice.
        """
        written = 0
        for start in range(0, len(records), MAX_LOG_RECORDS):
            chunk = [
                r if r.id else r.model_copy(update={"id": new_log_id()})
                for r in records[start : start + MAX_LOG_RECORDS]
            ]
            body = self._call("POST", "/logs", json_body=chunk, idempotent=True)
            written += int(body.get("written", len(chunk)))
        return written

    # ------------------------------------------------------------------ concurrency

    def create_concurrency_limit(self, request: ConcurrencyLimitCreate) -> ConcurrencyLimit:
        """``POST /concurrency_limits`` (AlreadyExists if it exists)."""
        body = self._call("POST", "/concurrency_limits", json_body=request)
        return ConcurrencyLimit.model_validate(body)

    def list_concurrency_limits(self, cursor: str | None = None) -> Page[ConcurrencyLimit]:
        """``GET /concurrency_limits``: one page."""
        body = self._call("GET", "/concurrency_limits", query={"cursor": cursor})
        return _page(ConcurrencyLimit, body)

    def read_all_concurrency_limits(self) -> list[ConcurrencyLimit]:
        """Every concurrency limit (all pages)."""
        limits: list[ConcurrencyLimit] = []
        cursor: str | None = None
        while True:
            page = self.list_concurrency_limits(cursor=cursor)
            limits.extend(page.items)
            if not page.next_cursor:
                return limits
            cursor = page.next_cursor

    def read_concurrency_limit(self, name: str) -> ConcurrencyLimit:
        """``GET /concurrency_limits/{name}`` with its active slots."""
        body = self._call("GET", f"/concurrency_limits/{segment(name)}")
        return ConcurrencyLimit.model_validate(body)

    def update_concurrency_limit(self, name: str, limit: int) -> ConcurrencyLimit:
        """``PATCH /concurrency_limits/{name}``: a new size."""
        body = self._call(
            "PATCH",
            f"/concurrency_limits/{segment(name)}",
            json_body={"limit": limit},
            idempotent=True,
        )
        return ConcurrencyLimit.model_validate(body)

    def delete_concurrency_limit(self, name: str) -> None:
        """``DELETE /concurrency_limits/{name}`` (NotFound if absent)."""
        self._call("DELETE", f"/concurrency_limits/{segment(name)}")

    def acquire_lease(
        self,
        names: Sequence[str],
        slots: int = 1,
        *,
        lease_seconds: float = 60.0,
        holder: str | None = None,
        lease_id: str | None = None,
    ) -> Lease | None:
        """``POST /concurrency_limits/leases``: the lease, or None when no slot is free now.

        The lease id is chosen here (or ``lease_id``, a UUID), so a retry after a lost
        response gets the lease the first attempt took instead of a second slot.
        Raises NotFound for an unknown limit and LimitExceeded when the request can
        never fit (a limit of 0).
        """
        body = self._call(
            "POST",
            "/concurrency_limits/leases",
            json_body={
                "names": list(names),
                "slots": slots,
                "lease_seconds": lease_seconds,
                "holder": holder,
                "id": lease_id or new_id(),
            },
            idempotent=True,
        )
        lease = body.get("lease") if isinstance(body, dict) else None
        return None if lease is None else Lease.model_validate(lease)

    def renew_lease(self, lease_id: str, lease_seconds: float = 60.0) -> Lease:
        """``POST /concurrency_limits/leases/{id}/renew`` (NotFound once reclaimed)."""
        body = self._call(
            "POST",
            f"/concurrency_limits/leases/{segment(lease_id)}/renew",
            json_body={"lease_seconds": lease_seconds},
            idempotent=True,
        )
        return Lease.model_validate(body)

    def release_lease(self, lease_id: str) -> bool:
        """``DELETE /concurrency_limits/leases/{id}``: True if this call released it."""
        body = self._call("DELETE", f"/concurrency_limits/leases/{segment(lease_id)}")
        return bool(body.get("released")) if isinstance(body, dict) else False

    # ------------------------------------------------------------------ results

    def upload_result(
        self, payload: bytes, *, serializer: str, storage_key: str | None = None
    ) -> ResultRef:
        """``POST /results``: store serialized bytes; inline when small, else in S3.

        The result's id is chosen here: a retry after a lost response writes the same
        S3 object, never a second (orphaned) one.
        """
        body = self._call(
            "POST",
            "/results",
            json_body={
                "serializer": serializer,
                "payload": base64.b64encode(payload).decode(),
                "storage_key": storage_key,
                "id": new_id(),
            },
            idempotent=True,
        )
        return ResultRef.model_validate(body)

    def download_result(self, ref: ResultRef) -> bytes:
        """``POST /results/load``: the stored bytes of a reference (ResultNotFound if gone)."""
        body = self._call(
            "POST", "/results/load", json_body=ref.model_dump(mode="json"), idempotent=True
        )
        return base64.b64decode(body["payload"])

    def persist_result(
        self,
        value: Any,
        *,
        serializer: str = "pickle",
        storage_key: str | None = None,
        payload_key: PayloadKey | None = None,
    ) -> ResultRef:
        """Serialize ``value`` here and store it through ``POST /results``.

        A pickle is sealed with ``payload_key`` (default: this machine's key,
        :func:`runtime.payload_auth.load_payload_key`); the API never sees the key.
        """
        data = get_serializer(serializer).dumps(value)
        if needs_mac(serializer):
            data = (payload_key or load_payload_key()).seal(data, serializer)
        return self.upload_result(data, serializer=serializer, storage_key=storage_key)

    def load_result(self, ref: ResultRef, *, payload_key: PayloadKey | None = None) -> Any:
        """The value a reference stands for (inline: decoded here; else downloaded).

        A pickle is unpickled only once its MAC checks out with ``payload_key``
        (default: this machine's key); ``PayloadAuthenticationError`` otherwise.
        """
        from runtime.results import ResultStore, open_payload

        if ref.inline is not None:
            data = ResultStore(None, "inline-only").load_bytes(ref)  # no S3 call
        else:
            data = self.download_result(ref)
        if payload_key is None and needs_mac(ref.serializer):
            payload_key = load_payload_key()
        return open_payload(ref, data, payload_key)

    # ------------------------------------------------------------------ cache

    def read_cache_record(self, key: str) -> CacheRecord:
        """``GET /cache/{key}``: the live record (NotFound on a miss)."""
        return CacheRecord.model_validate(self._call("GET", f"/cache/{segment(key)}"))

    def list_cache_records(
        self, task_key: str | None = None, limit: int | None = None
    ) -> list[CacheRecord]:
        """``GET /cache``: live records, newest first (of one task, or all)."""
        body = self._call("GET", "/cache", query={"task_key": task_key, "limit": limit})
        return [CacheRecord.model_validate(r) for r in body.get("items", [])]

    def clear_cache(self, key: str | None = None, task_key: str | None = None) -> int:
        """``DELETE /cache``: one key, every key of a task, or (neither) everything."""
        body = self._call("DELETE", "/cache", query={"key": key, "task_key": task_key})
        return int(body.get("deleted", 0)) if isinstance(body, dict) else 0

    def lock_cache_key(
        self, key: str, owner: str, lock_seconds: float = 30.0, refresh: bool = False
    ) -> bool:
        """``POST /cache/{key}/lock``: True when ``owner`` now holds the compute lock."""
        return self.try_lock_cache_key(key, owner, lock_seconds, refresh).acquired

    def try_lock_cache_key(
        self, key: str, owner: str, lock_seconds: float = 30.0, refresh: bool = False
    ) -> LockAttempt:
        """``POST /cache/{key}/lock``: acquired, or who holds the live lock (a 409)."""
        try:
            body = self._call(
                "POST",
                f"/cache/{segment(key)}/lock",
                json_body={"owner": owner, "lock_seconds": lock_seconds, "refresh": refresh},
                idempotent=True,  # the owner's id: a repeat by the same owner keeps its lock
            )
        except Conflict as exc:
            if exc.type != "cache_key_locked":
                raise
            until = exc.details.get("lock_until")
            try:
                lock_until = datetime.fromisoformat(str(until)).timestamp()
            except ValueError:
                lock_until = None
            return LockAttempt(False, str(exc.details.get("holder")), lock_until)
        return LockAttempt(True, owner) if body.get("locked") else LockAttempt(False)

    def write_cache_record(self, key: str, record: CacheRecord, owner: str) -> CacheRecord:
        """``PUT /cache/{key}``: store the record; CacheLockLost when the lock was taken over."""
        try:
            body = self._call(
                "PUT",
                f"/cache/{segment(key)}",
                json_body={"record": record.model_dump(mode="json"), "owner": owner},
            )
        except Conflict as exc:
            raise CacheLockLost(exc.status, exc.type, exc.message, exc.details) from None
        return CacheRecord.model_validate(body) if body else record

    def unlock_cache_key(self, key: str, owner: str) -> bool:
        """``DELETE /cache/{key}/lock?owner=``: True when ``owner``'s lock was removed."""
        body = self._call("DELETE", f"/cache/{segment(key)}/lock", query={"owner": owner})
        return bool(body.get("unlocked")) if isinstance(body, dict) else False

    # ------------------------------------------------------------------ internals

    def _create(self, path: str, request: FlowRunCreate | TaskRunCreate, key: str | None) -> Any:
        chosen_id = None
        if key is None and request.idempotency_key is None and request.id is None:
            chosen_id = new_id()
            request = request.model_copy(update={"id": chosen_id})
        body = request.model_dump(mode="json", exclude_unset=True)
        if chosen_id is not None:
            body["id"] = chosen_id
        headers = {"Idempotency-Key": key} if key is not None else None
        try:  # a key or an id: a repeat returns the first run
            return self._call("POST", path, json_body=body, headers=headers, idempotent=True)
        except AlreadyExists:
            if chosen_id is None:
                raise
            # our own earlier attempt created it before its response was lost
            return self._call("GET", f"{path}/{segment(chosen_id)}")

    def _set_state(
        self,
        kind: str,
        run_id: str,
        state: State,
        force: bool,
        raise_on_reject: bool,
        expected_version: int | None = None,
    ) -> OrchestrationResult:
        doc, tid = _state_body(state)
        path = f"/{kind}s/{segment(run_id)}/set_state"
        request: dict[str, Any] = {"state": doc, "force": force}
        if expected_version is not None:
            request["expected_version"] = expected_version
        try:
            body = self._call("POST", path, json_body=request, idempotent=True)
        except TransitionRejected as exc:
            current = exc.state
            if current is not None and current.details.transition_id == tid:
                # a retry of a request whose first attempt was applied: report that success
                run = self._call("GET", f"/{kind}s/{segment(run_id)}")
                return OrchestrationResult(
                    status="ACCEPT",
                    state=current,
                    run_count=int(run.get("run_count", 0)),
                    state_version=int(run.get("state_version", 0)),
                )
            if raise_on_reject or current is None:
                raise
            result = exc.result
        else:
            result = OrchestrationResult.model_validate(body)
        if result.accepted and state.has_data and result.state.type is state.type:
            result.state.with_data(state.data)
        return result


def _listify(query: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (list(v) if isinstance(v, Iterable) and not isinstance(v, str) else v)
        for k, v in query.items()
    }
