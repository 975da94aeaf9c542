"""``stratoflow_test_harness()``: run flows in tests against a fresh, private backend.

Prefect's ``prefect.testing.utilities.prefect_test_harness`` starts a temporary API
server over a temporary SQLite database. Here the backend is AWS on moto, so the
harness starts its own moto server on 127.0.0.1, provisions a new installation under a
new prefix, and makes it the process's engine backend (and what ``get_client()``
reads) until the block ends; then the previous backend is back, whatever it was (the
embedded default, an API, the stores of a test fixture). As a pytest fixture, exactly as
Prefect's docs (how-to-guides/workflows/test-workflows) show::

    @pytest.fixture(autouse=True, scope="session")
    def stratoflow_test_fixture():
        with stratoflow_test_harness():
            yield

``prefect_test_harness`` is the same function under Prefect's name.

Inside the harness, run logs also propagate to the root logger, so pytest's ``caplog``
sees them (Prefect's loggers propagate; Stratoflow's otherwise keep to their own
console handler). Pickled results are sealed with a key made for the harness, kept in a
temporary file (``STRATOFLOW_PAYLOAD_KEY_FILE`` points at it while the harness runs, so
child processes use the same key); the file is removed on exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

__all__ = ["prefect_test_harness", "stratoflow_test_harness"]

_KEY_ENV = "STRATOFLOW_PAYLOAD_KEY_FILE"


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextmanager
def _run_logs_propagate() -> Iterator[None]:
    from runtime.engine.runlogs import ROOT_LOGGER, setup_logging

    setup_logging()  # first, so that it does not turn propagation off again later
    logger = logging.getLogger(ROOT_LOGGER)
    previous = logger.propagate
    logger.propagate = True
    try:
        yield
    finally:
        logger.propagate = previous


@contextmanager
def stratoflow_test_harness(server_startup_timeout: int | None = 30) -> Iterator[None]:
    """Run the block's flows and tasks against a new moto server and installation.

    ``server_startup_timeout`` is accepted for Prefect's signature; moto's server starts
    in this process and needs no waiting. Flows run in the block are recorded in the
    harness's installation only; ``get_client()`` reads that installation too.
    """
    import boto3

    from runtime.engine.backend import import_local_aws, refuse_inside_lambda, use_engine_client
    from runtime.engine.client import DirectEngineClient
    from runtime.payload_auth import load_key_file
    from runtime.settings import get_settings
    from runtime.stores import Stores

    refuse_inside_lambda()
    localaws = import_local_aws("stratoflow_test_harness()", "")
    settings = get_settings()
    with ExitStack() as stack:
        key_dir = Path(tempfile.mkdtemp(prefix="stratoflow-harness-"))
        stack.callback(shutil.rmtree, key_dir, ignore_errors=True)
        key_file = key_dir / "payload.key"
        payload_key = load_key_file(key_file, create=True)
        server = localaws.LockedMotoServer().start()
        stack.callback(server.stop)
        session = boto3.session.Session(
            aws_access_key_id="harness",
            aws_secret_access_key="harness",
            region_name="us-east-1",
        )
        stores = Stores.connect(
            f"sf-test-{uuid.uuid4().hex[:8]}",
            session=session,
            endpoint_url=server.endpoint,
            inline_result_max_bytes=settings.inline_result_max_bytes,
            provision_resources=True,
        )
        stores.endpoint_url = server.endpoint  # type: ignore[attr-defined]
        client = DirectEngineClient(
            stores, lease_seconds=settings.lease_seconds, payload_key=payload_key
        )
        stack.callback(client.close)
        stack.enter_context(_env(_KEY_ENV, str(key_file)))
        stack.enter_context(_run_logs_propagate())
        stack.enter_context(use_engine_client(client))
        yield


prefect_test_harness = stratoflow_test_harness
"""Prefect's name for :func:`stratoflow_test_harness`."""
