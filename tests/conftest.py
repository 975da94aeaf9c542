"""Shared fixtures: which AWS backend a test talks to, and the guard that keeps it local.

Tiers (``aws_backend`` yields a :class:`Backend`):

* ``inprocess`` (default): the test body runs inside ``moto.mock_aws()``;
  ``AWS_ENDPOINT_URL`` is unset, boto3 calls never leave the process. DynamoDB
  requests are serialized by :func:`serialize_inprocess_dynamodb` so that
  threaded tests see atomic conditional writes, as on real DynamoDB (moto's
  backend races without it; see ``runtime/localaws.py``).
* ``server``: tests marked ``@pytest.mark.integration`` (every test under
  ``tests/integration/`` gets the marker automatically) talk HTTP to one
  session-wide :class:`LockedMotoServer` on 127.0.0.1; ``AWS_ENDPOINT_URL``
  points at it for the duration of the test, so plain ``boto3.client(...)``
  and any subprocess that inherits the environment reach it.
* ``external``: when ``AWS_ENDPOINT_URL`` is already set when pytest starts
  (e.g. LocalStack on http://localhost:4566; a ``make test-localstack`` target is
  planned), every tier uses that endpoint and nothing is mocked.

Isolation between tests comes from names, not resets: take the ``prefix``
fixture (``sf-1a2b3c4d``, unique per test) and derive every table, queue,
bucket and bus name from it. The session server is never reset between tests,
which also works against LocalStack where there is nothing to reset. (Note
that moto's state is process global: each in-process test's ``mock_aws``
starts from, and leaves, an empty moto, which clears the session server's
state too; with unique prefixes no test depends on what came before.)

Whatever the tier, the session-wide guard replaces credentials with fake ones
(``testing``), removes ``AWS_PROFILE``, and points the config and credential
files at nothing, so no test can reach a real AWS account.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from uuid import uuid4

import pytest
from moto import mock_aws

from runtime.engine.backend import use_engine_client
from runtime.engine.client import DirectEngineClient
from runtime.localaws import LockedMotoServer, serialize_inprocess_dynamodb
from runtime.stores import Stores

BackendKind = Literal["inprocess", "server", "external"]

#: The endpoint the user configured before pytest started (LocalStack, or any
#: other emulator). Read once at import, before any fixture touches the env.
EXTERNAL_ENDPOINT: str | None = os.environ.get("AWS_ENDPOINT_URL") or None

INTEGRATION_DIR = Path(__file__).parent / "integration"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Backend:
    """The AWS backend a test runs against.

    ``kind`` is ``"inprocess"`` (moto ``mock_aws``, ``endpoint_url`` None),
    ``"server"`` (the session's :class:`LockedMotoServer`) or ``"external"``
    (the endpoint given in ``AWS_ENDPOINT_URL`` before pytest started, e.g.
    LocalStack). ``endpoint_url`` is also exported as ``AWS_ENDPOINT_URL``
    while the test runs, so boto3 needs no explicit argument.
    """

    kind: BackendKind
    endpoint_url: str | None

    @property
    def over_http(self) -> bool:
        """True when requests travel over HTTP (server or external)."""
        return self.endpoint_url is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under ``tests/integration/`` as ``integration``."""
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _no_real_aws() -> Iterator[None]:
    """Fake credentials for the whole session; nothing can reach a real account.

    ``AWS_ENDPOINT_URL`` (and per-service ``AWS_ENDPOINT_URL_<SERVICE>``) are
    kept only when the user set ``AWS_ENDPOINT_URL`` (LocalStack mode); the
    credentials are fake in every mode.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_CREDENTIALS.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN"):
            mp.delenv(name, raising=False)
        missing = str(Path(os.devnull).with_name("stratoflow-tests-no-aws-config"))
        mp.setenv("AWS_CONFIG_FILE", missing)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        if EXTERNAL_ENDPOINT is None:
            for name in list(os.environ):
                if name.startswith("AWS_ENDPOINT_URL"):
                    mp.delenv(name)
        yield


@pytest.fixture(scope="session", autouse=True)
def _payload_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One payload key file for the session (subprocesses inherit it), never ~/.stratoflow."""
    path = tmp_path_factory.mktemp("payload-key") / "test.key"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRATOFLOW_PAYLOAD_KEY_FILE", str(path))
        yield path


@pytest.fixture(scope="session")
def moto_server() -> Iterator[LockedMotoServer]:
    """One :class:`LockedMotoServer` for the whole session (started on first use)."""
    with LockedMotoServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A resource-name prefix unique to this test: ``sf-`` plus 8 hex digits."""
    return f"sf-{uuid4().hex[:8]}"


@pytest.fixture
def aws_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    """The backend for this test's tier (see the module docstring)."""
    if EXTERNAL_ENDPOINT is not None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", EXTERNAL_ENDPOINT)
        yield Backend("external", EXTERNAL_ENDPOINT)
    elif request.node.get_closest_marker("integration") is not None:
        server: LockedMotoServer = request.getfixturevalue("moto_server")
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        yield Backend("server", server.endpoint)
    else:
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws(), serialize_inprocess_dynamodb():
            yield Backend("inprocess", None)


@pytest.fixture
def stores(aws_backend: Backend, prefix: str) -> Stores:
    """Every store of a fresh installation named ``prefix``, provisioned on this test's backend."""
    return Stores.connect(prefix, provision_resources=True)


@pytest.fixture
def engine(stores: Stores) -> Iterator[DirectEngineClient]:
    """The flow/task engine writing to this test's ``stores`` (flows called in the test use it)."""
    client = DirectEngineClient(stores)
    with use_engine_client(client):
        yield client
    client.close()


@pytest.fixture
def api(stores: Stores) -> Iterator[str]:
    """The API (``handlers.api``) served by the local gateway on 127.0.0.1; yields its URL.

    Its handlers use this test's ``stores``. Under tests/integration/ the stores talk
    HTTP to the loopback moto server, so a request crosses two real HTTP hops.
    """
    from handlers.deps import set_stores
    from handlers.local_gateway import LocalGateway

    set_stores(stores)
    try:
        with LocalGateway() as gateway:
            yield gateway.url
    finally:
        set_stores(None)
