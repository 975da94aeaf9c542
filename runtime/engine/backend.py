"""Which backend the engine writes to, chosen by configuration (docs/architecture.md).

* ``STRATOFLOW_API_URL`` set: the HTTP API, through
  :class:`~runtime.engine.http_engine_client.ApiEngineClient` (SigV4-signed unless the
  URL is local; ``STRATOFLOW_API_TOKEN`` sends a bearer token instead).
* ``AWS_ENDPOINT_URL`` or ``STRATOFLOW_PREFIX`` set: the stores directly, at
  boto3's configured endpoint (AWS, LocalStack or a moto server).
* Otherwise, the embedded default: a moto server on 127.0.0.1 inside this
  process, provisioned from the resource specs on first use. Only Stratoflow's
  own clients point at it, so the flow's own boto3 calls are untouched. It needs
  the ``local`` extra (moto's server: ``pip install 'stratoflow[local]'``) and
  refuses to start inside AWS Lambda, where its data would vanish with the sandbox.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING

from runtime.engine.client import DirectEngineClient, EngineClient

if TYPE_CHECKING:
    from runtime.stores import Stores

_client: EngineClient | None = None
_embedded: Stores | None = None
_lock = threading.Lock()

#: What to install when the embedded default (or ``stratoflow dev``) lacks moto's server.
LOCAL_EXTRA_INSTALL = "pip install 'stratoflow[local]'"

#: The packages of the ``local`` extra that ``runtime.localaws`` imports.
_LOCAL_EXTRA_MODULES = frozenset({"moto", "werkzeug", "flask", "flask_cors"})


class EmbeddedBackendUnavailable(RuntimeError):
    """The embedded default cannot start here (inside Lambda, or without the ``local`` extra)."""


_USE_A_RUNNING_STACK = (
    " (or set STRATOFLOW_API_URL, or AWS_ENDPOINT_URL / STRATOFLOW_PREFIX, to use a running stack)"
)


def import_local_aws(
    user: str = "the embedded default", alternatives: str = _USE_A_RUNNING_STACK
) -> ModuleType:
    """``runtime.localaws`` (moto's server), or a one-line error naming the extra to install.

    ``user`` names what needs it in that error and ``alternatives`` ends it
    (``stratoflow dev`` passes its own name and none).
    """
    try:
        import runtime.localaws as localaws
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _LOCAL_EXTRA_MODULES:
            raise
        raise EmbeddedBackendUnavailable(
            f"{user} runs a moto server in this process, and {exc.name!r} "
            f"is not installed: {LOCAL_EXTRA_INSTALL}{alternatives}"
        ) from None
    return localaws


def refuse_inside_lambda() -> None:
    """Raise when running inside AWS Lambda, where an in-process moto would lose every write."""
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if function:
        raise EmbeddedBackendUnavailable(
            f"the embedded default (a moto server in this process) refuses to start inside "
            f"AWS Lambda (function {function!r}): its data would vanish with the sandbox; "
            "set STRATOFLOW_PREFIX (the deployed tables) or STRATOFLOW_API_URL"
        )


def embedded_stores() -> Stores:
    """The embedded default's stores: a moto server on loopback in this process."""
    global _embedded
    import boto3

    from runtime.settings import get_settings
    from runtime.stores import Stores

    if _embedded is None:
        refuse_inside_lambda()
        server = import_local_aws().LockedMotoServer().start()
        atexit.register(server.stop)
        session = boto3.session.Session(
            aws_access_key_id="embedded",
            aws_secret_access_key="embedded",
            region_name="us-east-1",
        )
        settings = get_settings()
        stores = Stores.connect(
            settings.prefix,
            session=session,
            endpoint_url=server.endpoint,
            inline_result_max_bytes=settings.inline_result_max_bytes,
            provision_resources=True,
        )
        stores.endpoint_url = server.endpoint  # type: ignore[attr-defined]
        _embedded = stores
    return _embedded


def connect_stores() -> Stores:
    """The stores for the configured backend (embedded or direct)."""
    from runtime.settings import get_settings
    from runtime.stores import Stores

    settings = get_settings()
    kind = settings.backend()
    if kind == "embedded":
        return embedded_stores()
    if kind == "api":
        raise RuntimeError(
            "STRATOFLOW_API_URL is set: the engine and the SDK talk to the API, not to "
            "the stores (use get_engine_client() or sdk.get_client()); unset it, or set "
            "AWS_ENDPOINT_URL / STRATOFLOW_PREFIX, to use the stores directly"
        )
    return Stores.connect(
        settings.prefix,
        results_bucket=settings.results_bucket,
        inline_result_max_bytes=settings.inline_result_max_bytes,
    )


def get_engine_client() -> EngineClient:
    """The process-wide engine client for the configured backend (created on first use)."""
    global _client
    with _lock:
        if _client is None:
            from runtime.settings import get_settings

            settings = get_settings()
            if settings.backend() == "api":
                from runtime.engine.http_engine_client import ApiEngineClient

                _client = ApiEngineClient(settings.api_url, lease_seconds=settings.lease_seconds)
            else:
                _client = DirectEngineClient(connect_stores(), lease_seconds=settings.lease_seconds)
            atexit.register(_client.close)
        return _client


@contextmanager
def use_engine_client(client: EngineClient) -> Iterator[EngineClient]:
    """Make ``client`` the process-wide engine client while the block runs (tests, workers)."""
    global _client
    with _lock:
        previous, _client = _client, client
    try:
        yield client
    finally:
        client.flush()
        with _lock:
            _client = previous
