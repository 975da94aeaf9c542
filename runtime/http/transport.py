"""The HTTP transport of the API clients: auth, pooled connections, retries, typed errors.

One ``urllib3.PoolManager`` per transport (thread-safe, pooled keep-alive
connections), JSON bodies. An idempotent request (GET, PUT, DELETE, one with an
``Idempotency-Key``, or one the caller marks so because it carries a
client-chosen id) that gets 429 or any 5xx, or that fails to connect, times out
or loses its connection, is retried up to ``retries`` times, waiting as
:class:`runtime.backoff.Backoff` says (capped exponential, full jitter, from
``backoff`` up to ``max_backoff`` seconds), or the ``Retry-After`` the server
sent (at most ``max_retry_after``). Any other request is retried only when it
surely was not applied: the connection could not be made, or the answer was
429 or 503; never after a read timeout, a dropped connection or another 5xx,
which may come after the server did the work (the error then says so).
A 429 ``limit_exceeded`` (a concurrency request that can never fit) and every
other 4xx are never retried.

Auth: SigV4 (:mod:`runtime.http.signing`), or with a ``token`` (or
``STRATOFLOW_API_TOKEN``) ``Authorization: Bearer <token>`` (the local gateway).
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from pydantic import BaseModel

from runtime.backoff import Backoff
from runtime.http.errors import (
    ApiConnectionError,
    ApiError,
    LimitExceeded,
    ResultNotFound,
    ServerError,
    Unauthorized,
    error_from_response,
)
from runtime.http.signing import (
    UNRESERVED,
    botocore_region,
    is_local_url,
    region_from_url,
    sign_request,
)

__all__ = [
    "IDEMPOTENT_METHODS",
    "NOT_APPLIED_STATUSES",
    "ApiResponse",
    "ApiTransport",
    "encode_query",
    "segment",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods retried after any transient failure unless the caller says otherwise."""
NOT_APPLIED_STATUSES = frozenset({429, 503})
"""Statuses that say the request was not applied: any request may be retried after them."""


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
                f"{quote(key, safe=UNRESERVED)}={quote(_query_value(item), safe=UNRESERVED)}"
            )
    return "&".join(pairs)


def segment(value: str) -> str:
    """One path segment, percent-encoded (ids, names and cache keys)."""
    if not value:
        raise ValueError("a path segment must not be empty")
    return quote(str(value), safe=UNRESERVED)


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
            region or region_from_url(self.api_url) or settings.region or botocore_region()
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
        self.retry_backoff = Backoff(base=backoff, cap=max_backoff, rng=self._random.random)
        """The wait between retries when the server sent no ``Retry-After``."""

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
        return self.retry_backoff.delay(attempt)

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

    def presigned(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None
    ) -> bytes:
        """Send a presigned S3 request; the response body.

        Retries connection errors, 5xx and 503 SlowDown (a PUT or GET of one key is
        idempotent); a missing object is :class:`ResultNotFound`, another refusal an
        :class:`ApiError` naming S3's error code.
        """
        backoff = Backoff(base=self.backoff, cap=self.max_backoff)
        where = urlsplit(url)
        what = f"{method} {where.scheme}://{where.netloc}{where.path}"
        attempt = 0
        while True:
            try:
                response = self._pool.request(
                    method, url, body=data, headers=dict(headers), redirect=False, retries=False
                )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt >= self.retries:
                    raise ApiConnectionError(
                        0,
                        "connection_error",
                        f"{what}: no response after {attempt + 1} attempt(s): {exc}",
                    ) from exc
            else:
                if response.status < 300:
                    return bytes(response.data)
                code = _s3_error_code(response.data)
                if response.status == 404 or code == "NoSuchKey":
                    raise ResultNotFound(
                        404,
                        "result_not_found",
                        f"result {where.path.lstrip('/')} not found in S3 ({code or 404})",
                    )
                if (response.status < 500 and response.status != 429) or (attempt >= self.retries):
                    cls = ServerError if response.status >= 500 else ApiError
                    raise cls(
                        response.status,
                        "s3_error",
                        f"{what}: S3 answered {response.status} {code or ''}".rstrip(),
                        {"code": code} if code else None,
                    )
            backoff.sleep(attempt, sleep=self._sleep)
            attempt += 1

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.clear()


def _s3_error_code(body: bytes) -> str | None:
    """The ``<Code>`` of an S3 XML error body, if any."""
    match = re.search(rb"<Code>([^<]{1,64})</Code>", body or b"")
    return match.group(1).decode("ascii", "replace") if match else None
