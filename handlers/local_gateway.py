"""The local API Gateway: serve the Lambda API handler over HTTP on 127.0.0.1.

Each HTTP request becomes the same REST proxy event API Gateway sends (method,
path, headers and multi-value headers, query and multi-value query parameters,
body, ``requestContext`` with a request id and stage) and the handler's result
becomes the HTTP response, so a handler behaves here as it does behind API
Gateway. Unsigned requests are accepted by default; with a token configured
(``STRATOFLOW_API_TOKEN``) every request must send ``Authorization: Bearer <token>``.

A body larger than a Lambda invocation accepts (:data:`MAX_REQUEST_BYTES`, 6 MB;
API Gateway itself stops at 10 MB) is refused with 413 ``payload_too_large``
before the handler runs, as the deployed API would refuse it.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from runtime.limits import LAMBDA_PAYLOAD_MAX_BYTES

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

MAX_REQUEST_BYTES = LAMBDA_PAYLOAD_MAX_BYTES
"""Largest request body served: Lambda's synchronous invocation payload limit (6 MB)."""

_MAX_DRAINED_BYTES = 64 * 1024 * 1024
"""An oversized body up to this size is read and discarded, so the client sees the 413."""


def _error(status: int, type_: str, message: str, **details: Any) -> Response:
    body = {"error": {"type": type_, "message": message, "details": details}}
    return Response(json.dumps(body), status=status, content_type="application/json")


def _too_large(size: int | None) -> Response:
    sent = f"a request body of {size} bytes" if size is not None else "the request body"
    return _error(
        413,
        "payload_too_large",
        f"{sent} is larger than the {MAX_REQUEST_BYTES} bytes (6 MB) a Lambda invocation "
        "accepts: send less per request (e.g. fewer records per batch, results to S3)",
        limit=MAX_REQUEST_BYTES,
        **({"size": size} if size is not None else {}),
    )


def _drain(environ: dict[str, Any], size: int) -> None:
    """Read and drop what the client is still sending (so it can read the response)."""
    remaining = min(size, _MAX_DRAINED_BYTES)
    stream = environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            break
        remaining -= len(chunk)


class _QuietHandler(WSGIRequestHandler):
    """No access-log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class LambdaContext:
    """The parts of a Lambda context object a handler may read."""

    function_name = "stratoflow-api-local"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:stratoflow-api-local"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        """Lambda's API has a 29 s integration timeout; report it as the budget."""
        return 29_000


def to_event(request: Request, stage: str = "local") -> dict[str, Any]:
    """The API Gateway REST proxy event for an HTTP request."""
    raw = request.get_data()
    try:
        body: str | None = raw.decode("utf-8") if raw else None
        is_b64 = False
    except UnicodeDecodeError:
        body, is_b64 = base64.b64encode(raw).decode(), True
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        multi_headers.setdefault(name, []).append(value)
    multi_query = {k: request.args.getlist(k) for k in request.args}
    request_id = str(uuid.uuid4())
    return {
        "resource": request.path,
        "path": request.path,
        "httpMethod": request.method,
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "stage": stage,
            "httpMethod": request.method,
            "path": f"/{stage}{request.path}",
            "resourcePath": request.path,
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": request.remote_addr or "127.0.0.1"},
        },
        "body": body,
        "isBase64Encoded": is_b64,
    }


def to_response(result: dict[str, Any]) -> Response:
    """The HTTP response for a handler's proxy result."""
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    response = Response(data, status=int(result.get("statusCode", 200)))
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        response.headers.remove(name)
        for value in values:
            response.headers.add(name, str(value))
    return response


class LocalGateway:
    """An HTTP server on 127.0.0.1 that invokes a Lambda handler per request."""

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        stage: str = "local",
    ) -> None:
        if handler is None:
            from handlers.api import lambda_handler

            handler = lambda_handler
        self.handler = handler
        self.host = host
        self.port_requested = port
        self.token = token
        self.stage = stage
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._invoking = threading.Lock()

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application: authorize, translate, invoke, translate back."""
        request = Request(environ)
        request.max_content_length = MAX_REQUEST_BYTES
        if self.token is not None:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent, f"Bearer {self.token}"):
                response = _error(
                    401, "unauthorized", "send Authorization: Bearer <STRATOFLOW_API_TOKEN>"
                )
                return response(environ, start_response)
        size = request.content_length
        if size is not None and size > MAX_REQUEST_BYTES:
            _drain(environ, size)
            return _too_large(size)(environ, start_response)
        try:
            event = to_event(request, self.stage)
        except RequestEntityTooLarge:  # a chunked body without Content-Length
            return _too_large(None)(environ, start_response)
        # One invocation at a time, as in one Lambda container: the Powertools resolver
        # keeps the current event (and its path parameters) on the shared app object.
        with self._invoking:
            result = self.handler(event, LambdaContext(event["requestContext"]["requestId"]))
        return to_response(result)(environ, start_response)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> LocalGateway:
        """Listen and serve in a background thread; returns once connections are accepted."""
        self._server = make_server(
            self.host, self.port_requested, self.wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stratoflow-local-api", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server = make_server(
            self.host, self.port_requested, self.wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
