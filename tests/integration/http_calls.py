"""One plain HTTP request to the local API, checking every error's shape (shared by API tests)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(
    api: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One HTTP request; returns (status, parsed JSON or None).

    Every error must have the one shape (``{"error": {type, message, details}}``)
    and be a 4xx: a 5xx fails the calling test.
    """
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        api + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read()
    payload = json.loads(text) if text else None
    if status >= 400:
        assert status < 500, payload
        assert isinstance(payload, dict) and set(payload) == {"error"}, payload
        assert set(payload["error"]) == {"type", "message", "details"}, payload
        assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
        assert isinstance(payload["error"]["details"], dict)
    return status, payload
