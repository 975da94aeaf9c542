"""A moto server on loopback whose DynamoDB is atomic, as real DynamoDB is.

Used by the embedded default (a flow called in a plain script), by
``stratoflow dev``, and by the test harness.

Why this exists (measured on these machines, see docs/local-aws.md): moto 5.x's server handles each
request on its own thread and takes no lock around its DynamoDB backend, so a
conditional write is a read, a check and a write that other threads can
interleave. 16 threads racing one conditional ``UpdateItem`` produced two or
three "winners" in 8 of 30 trials, and a lease counter guarded by
``held < 5`` ended at -1. Real DynamoDB (and DynamoDB Local, which LocalStack
uses) applies each conditional write atomically per item, so on a bare moto
server correct code looks broken and tests of races are meaningless.

:class:`LockedMotoServer` serves moto's own WSGI application
(``DomainDispatcherApplication(create_backend_app)``, exactly what
``moto_server`` and ``ThreadedMotoServer`` serve) with werkzeug's threaded
server, wrapped in :class:`SerializeDynamoDB`: a middleware that holds one lock
for the whole handling of every request whose ``X-Amz-Target`` header starts
with ``DynamoDB_`` (the JSON protocol's target, e.g.
``DynamoDB_20120810.UpdateItem``). Every DynamoDB request is therefore
serialized: coarser than DynamoDB's per-item atomicity, never weaker.

Everything else runs outside the lock, on purpose: an SQS ``ReceiveMessage``
with ``WaitTimeSeconds`` sleeps inside moto for up to 20 s, and if it held the
lock one idle worker would stall every other request.

The lock is per process, not per server: moto keeps its backends in module
globals, so every server in a process (and ``mock_aws`` in that process)
shares one state, and one lock is what guards it. :func:`serialize_inprocess_dynamodb`
applies the same lock to in-process ``mock_aws`` requests, which race in the
same way when a test uses threads.

:class:`MotoStateFile` saves moto's state (the backends of the services the
stack uses) to a file when the local stack stops and restores it when the
stack starts again: ``stratoflow dev --state-dir DIR``.

Run standalone (used by subprocess tests)::

    python -m runtime.localaws --port 0

prints the endpoint (``http://127.0.0.1:PORT``) as its first stdout line once
the socket is listening, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import copyreg
import io
import os
import pickle
import signal
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

__all__ = [
    "DYNAMODB_LOCK",
    "DYNAMODB_TARGET_PREFIX",
    "PERSISTED_SERVICES",
    "LockedMotoServer",
    "MotoStateError",
    "MotoStateFile",
    "SerializeDynamoDB",
    "is_dynamodb_target",
    "run_server_main",
    "serialize_inprocess_dynamodb",
]

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]

#: Prefix of the ``X-Amz-Target`` header of every DynamoDB (JSON 1.0) request.
DYNAMODB_TARGET_PREFIX = "DynamoDB_"

#: The one lock that serializes DynamoDB requests in this process. moto's
#: backends are process globals, so all servers and ``mock_aws`` share it.
DYNAMODB_LOCK = threading.Lock()


def is_dynamodb_target(target: object) -> bool:
    """True when an ``X-Amz-Target`` header value names a DynamoDB operation."""
    if isinstance(target, bytes):
        target = target.decode("latin-1")
    return isinstance(target, str) and target.startswith(DYNAMODB_TARGET_PREFIX)


def _buffer_request_body(environ: WSGIEnviron) -> None:
    """Read the request body from the socket now, so a slow client never holds the lock."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    length_text = environ.get("CONTENT_LENGTH") or ""
    if length_text.strip().isdigit():
        body = stream.read(int(length_text))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        return
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


class SerializeDynamoDB:
    """WSGI middleware: handle DynamoDB requests one at a time, everything else freely.

    The lock covers the whole request, including the generation of the
    response body: a WSGI application may return a lazy iterable (werkzeug
    iterates it after ``__call__`` returns, when writing to the socket), and
    moto could still be reading its backend then. The body is therefore
    materialized, and the iterable closed, while the lock is held; only the
    finished bytes are handed back to the server to send.
    """

    def __init__(
        self, app: WSGIApp, lock: threading.Lock = DYNAMODB_LOCK, *, enabled: bool = True
    ) -> None:
        self.app = app
        self.lock = lock
        self.enabled = enabled

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if not (self.enabled and is_dynamodb_target(environ.get("HTTP_X_AMZ_TARGET"))):
            return self.app(environ, start_response)
        _buffer_request_body(environ)
        with self.lock:
            result = self.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]


class _QuietRequestHandler(MotoRequestHandler):
    """moto's request handler without one access-log line per request (errors still log)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class LockedMotoServer:
    """moto's server on 127.0.0.1, a random free port, a background thread.

    ``serialize_dynamodb=True`` (the default) wraps the app in
    :class:`SerializeDynamoDB`, which makes conditional writes atomic as in
    real DynamoDB. ``False`` serves the bare app, only to demonstrate (in
    ``bench/moto_atomicity.py``) what a plain ``moto_server`` does.

    Usable as a context manager::

        with LockedMotoServer() as server:
            boto3.client("dynamodb", endpoint_url=server.endpoint)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        serialize_dynamodb: bool = True,
        quiet: bool = True,
    ) -> None:
        self._host = host
        self._port = port
        self._serialize_dynamodb = serialize_dynamodb
        self._quiet = quiet
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def serialize_dynamodb(self) -> bool:
        """Whether DynamoDB requests are serialized by the process-wide lock."""
        return self._serialize_dynamodb

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LockedMotoServer is not started")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``, for boto3's ``endpoint_url`` or ``AWS_ENDPOINT_URL``."""
        return f"http://{self._host}:{self.port}"

    def start(self) -> LockedMotoServer:
        """Bind, listen and serve in a daemon thread. Returns once connections are accepted.

        ``make_server`` binds and listens before returning, so clients that
        connect before ``serve_forever`` runs simply wait in the backlog.
        """
        if self._server is not None:
            raise RuntimeError("LockedMotoServer is already started")
        app: WSGIApp = DomainDispatcherApplication(create_backend_app)
        if self._serialize_dynamodb:
            app = SerializeDynamoDB(app, DYNAMODB_LOCK)
        handler = _QuietRequestHandler if self._quiet else MotoRequestHandler
        server = make_server(self._host, self._port, app, threaded=True, request_handler=handler)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"moto-server-{server.server_address[1]}",
            daemon=True,
        )
        self._server = server
        self._thread = thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests and close the socket (idempotent).

        Request threads are daemons: a long poll still sleeping in moto is
        abandoned rather than waited for.
        """
        server, thread = self._server, self._thread
        self._server = None
        self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    def reset(self) -> None:
        """Wipe all moto state by POSTing to ``/moto-api/reset``.

        moto's state is process global: this also clears anything an
        in-process ``mock_aws`` in the same process holds.
        """
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def __enter__(self) -> LockedMotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint if self._server is not None else "stopped"
        return f"LockedMotoServer({where}, serialize_dynamodb={self._serialize_dynamodb})"


@contextmanager
def serialize_inprocess_dynamodb(lock: threading.Lock = DYNAMODB_LOCK) -> Iterator[None]:
    """Serialize DynamoDB requests handled by in-process ``mock_aws`` (for threaded tests).

    ``mock_aws`` answers a boto3 call in the caller's thread, through
    ``moto.core.botocore_stubber.BotocoreStubber.process_request`` (both the
    botocore ``before-send`` hook and the ``responses`` hook go through it);
    two threads can interleave inside the DynamoDB backend exactly as on the
    bare server. While this context is active, that method holds ``lock`` for
    requests whose ``X-Amz-Target`` is a DynamoDB one. The response is built
    completely inside the call, so the lock covers it.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        if is_dynamodb_target(request.headers.get("X-Amz-Target")):
            with lock:
                return original(self, request)
        return original(self, request)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.process_request = original  # type: ignore[method-assign]


#: The moto services whose state :class:`MotoStateFile` keeps: every service the stack
#: provisions or will (tables, bucket, queues, bus, schedules, secrets).
PERSISTED_SERVICES = ("dynamodb", "s3", "sqs", "events", "scheduler", "secretsmanager")

#: Version of the state file's layout (bumped when it changes).
STATE_FORMAT = 1


class MotoStateError(Exception):
    """A state file that cannot be read or written; the message says which and why."""


def _fresh_lock(kind: Callable[[], Any]) -> Callable[[Any], tuple[Any, tuple[()]]]:
    return lambda lock: (kind, ())


def _dump_backends(services: Iterable[str]) -> bytes:
    """moto's backends of ``services`` pickled (locks become fresh, unlocked locks).

    Called with the DynamoDB lock held and no server running, so nothing changes
    while it is copied.
    """
    from moto import __version__ as moto_version
    from moto.backends import get_backend

    state = {name: _backend_state(get_backend(name)) for name in services}  # type: ignore[call-overload]
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    table = copyreg.dispatch_table.copy()
    table[type(threading.Lock())] = _fresh_lock(threading.Lock)
    table[type(threading.RLock())] = _fresh_lock(threading.RLock)
    pickler.dispatch_table = table
    pickler.dump({"format": STATE_FORMAT, "moto": moto_version, "services": state})
    return buffer.getvalue()


def _restore_backends(blob: bytes) -> list[str]:
    """Replace moto's backends by those in ``blob``; returns the services restored."""
    from moto.backends import get_backend

    document = pickle.loads(blob)
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise MotoStateError("not a Stratoflow moto state file (unknown format)")
    restored: list[str] = []
    for name, saved in document["services"].items():
        backends = get_backend(name)
        backends.clear()
        backends.update(saved["accounts"])
        vars(backends).update(saved["attributes"])
        restored.append(name)
    return restored


#: Attributes of a ``BackendDict`` fixed at import (the rest is state, e.g. S3's
#: ``bucket_accounts``, the index from a bucket name to its account).
_BACKEND_DICT_FIXED = frozenset(
    {"backend", "service_name", "_use_boto3_regions", "_additional_regions", "_id"}
)


def _backend_state(backends: Any) -> dict[str, Any]:
    """A ``BackendDict``'s state: its per-account backends and its own extra attributes."""
    return {
        "accounts": dict(backends),
        "attributes": {k: v for k, v in vars(backends).items() if k not in _BACKEND_DICT_FIXED},
    }


class MotoStateFile:
    """moto's state kept in ``DIR/moto-state.pickle`` across restarts of the local stack.

    ``start()`` restores the file when it exists (before the moto server serves any
    request); ``stop()`` writes it (after the server stopped), atomically (a
    temporary file renamed over the old one) and readable only by its owner. The file
    is a pickle of moto's in-memory backends, the same objects moto serves from: it
    is trusted like any file in the user's own directory, never read from elsewhere.
    A process killed with SIGKILL saves nothing (the previous file stays).
    """

    FILE_NAME = "moto-state.pickle"

    def __init__(
        self, directory: str | os.PathLike[str], services: Iterable[str] = PERSISTED_SERVICES
    ) -> None:
        self.directory = Path(directory)
        self.services = tuple(services)
        self.restored: list[str] = []

    @property
    def path(self) -> Path:
        """The state file."""
        return self.directory / self.FILE_NAME

    def start(self) -> MotoStateFile:
        """Restore the saved state, if any (MotoStateError when it cannot be read)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise MotoStateError(f"cannot create state directory {self.directory}: {exc}") from exc
        if not self.path.exists():
            return self
        try:
            blob = self.path.read_bytes()
            with DYNAMODB_LOCK:
                self.restored = _restore_backends(blob)
        except MotoStateError as exc:
            raise MotoStateError(f"{self.path}: {exc}") from exc
        except Exception as exc:
            raise MotoStateError(
                f"cannot restore {self.path} ({type(exc).__name__}: {exc}); "
                "move it away to start from an empty stack"
            ) from exc
        return self

    def save(self) -> Path:
        """Write the current state to the file (atomically); returns its path."""
        with DYNAMODB_LOCK:
            blob = _dump_backends(self.services)
        temporary = self.path.with_name(f".{self.FILE_NAME}.{os.getpid()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise MotoStateError(f"cannot write {self.path}: {exc}") from exc
        return self.path

    def stop(self) -> None:
        """Save the state (the server has stopped: nothing changes meanwhile)."""
        self.save()


def run_server_main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m runtime.localaws``.

    Prints the endpoint on stdout (one line, flushed) once the server accepts
    connections, then serves until SIGTERM or SIGINT.
    """
    parser = argparse.ArgumentParser(
        prog="python -m runtime.localaws",
        description="moto server with serialized (atomic) DynamoDB requests",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--no-serialize-dynamodb",
        dest="serialize_dynamodb",
        action="store_false",
        help="serve the bare moto app (non-atomic conditional writes)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = LockedMotoServer(
        args.host,
        args.port,
        serialize_dynamodb=args.serialize_dynamodb,
        quiet=not args.verbose,
    )
    server.start()
    try:
        print(server.endpoint, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(run_server_main())
