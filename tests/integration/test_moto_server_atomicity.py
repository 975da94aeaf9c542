"""The integration tier's moto server behaves like DynamoDB where races are concerned.

Real threads, real HTTP, plain boto3. The server is the session's
:class:`LockedMotoServer` (or the external endpoint when ``AWS_ENDPOINT_URL``
was set, e.g. LocalStack, where the same properties hold natively).

What a bare, unlocked moto server does is not asserted here (it is
nondeterministic); ``bench/moto_atomicity.py`` prints the figures.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runtime.localaws import LockedMotoServer

if TYPE_CHECKING:
    from tests.conftest import Backend

THREADS = 16
TRIALS = 20
REPO_ROOT = Path(__file__).resolve().parents[2]

# Each racer gets its own client (its own connection pool), like separate workers.
CLIENT_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=4)


def _create_table(ddb: Any, name: str) -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})


@pytest.fixture
def table(aws_backend: Backend, prefix: str) -> Iterator[str]:
    ddb = boto3.client("dynamodb")
    name = f"{prefix}-runs"
    _create_table(ddb, name)
    yield name
    ddb.delete_table(TableName=name)


def _claim(ddb: Any, table: str, key: str) -> str:
    """The PENDING -> RUNNING claim every worker makes; returns "won" or the error code."""
    try:
        ddb.update_item(
            TableName=table,
            Key={"pk": {"S": key}},
            UpdateExpression="SET #s = :running, v = v + :one",
            ConditionExpression="#s = :pending AND v = :zero",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":running": {"S": "RUNNING"},
                ":pending": {"S": "PENDING"},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
            },
        )
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "won"


def _race_once(clients: list[Any], table: str, key: str) -> list[str]:
    """Release one thread per client together on the same claim; return their outcomes."""
    barrier = threading.Barrier(len(clients))
    outcomes: list[str] = []
    outcomes_lock = threading.Lock()

    def racer(ddb: Any) -> None:
        barrier.wait(timeout=30)
        outcome = _claim(ddb, table, key)
        with outcomes_lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=racer, args=(ddb,)) for ddb in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.fixture
def fine_thread_switching() -> Iterator[None]:
    """Switch threads every microsecond (default 5 ms) while the test runs.

    The server threads share this process's GIL with the racing clients; at
    the default interval an unlocked moto server interleaves so rarely that a
    race test would pass on it too. At 1 us a bare server gives several
    multi-winner trials in 30 (``bench/moto_atomicity.py``), so this test can
    fail if the lock stops working.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def test_conditional_update_race_has_exactly_one_winner(
    aws_backend: Backend, table: str, fine_thread_switching: None
) -> None:
    clients = [boto3.client("dynamodb", config=CLIENT_CONFIG) for _ in range(THREADS)]
    setup = clients[0]

    for trial in range(TRIALS):
        key = f"run-{trial}"
        setup.put_item(
            TableName=table,
            Item={"pk": {"S": key}, "state": {"S": "PENDING"}, "v": {"N": "0"}},
        )
        outcomes = _race_once(clients, table, key)

        assert len(outcomes) == THREADS, f"trial {trial}: some racers never finished"
        assert outcomes.count("won") == 1, f"trial {trial}: {sorted(outcomes)}"
        assert outcomes.count("ConditionalCheckFailedException") == THREADS - 1, (
            f"trial {trial}: {sorted(outcomes)}"
        )
        item = setup.get_item(TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True)
        assert item["Item"]["state"] == {"S": "RUNNING"}
        assert item["Item"]["v"] == {"N": "1"}, f"trial {trial}: the counter saw a lost update"


def test_sqs_long_poll_does_not_block_dynamodb(
    aws_backend: Backend, prefix: str, table: str
) -> None:
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"{prefix}-pool")["QueueUrl"]
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName=table, Item={"pk": {"S": "probe"}, "state": {"S": "PENDING"}})

    poll_started = threading.Event()
    poll_done = threading.Event()
    received: list[Any] = []

    def long_poll() -> None:
        poller = boto3.client("sqs", config=Config(read_timeout=30))
        poll_started.set()
        response = poller.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)
        received.extend(response.get("Messages", []))
        poll_done.set()

    poller_thread = threading.Thread(target=long_poll)
    poller_thread.start()
    try:
        assert poll_started.wait(timeout=10)
        # Give the poll a head start so it is waiting inside the server, then make
        # DynamoDB calls: each must come back while the poll is still in flight.
        assert not poll_done.wait(timeout=0.3), "the long poll returned early on an empty queue"
        for _ in range(3):
            item = ddb.get_item(TableName=table, Key={"pk": {"S": "probe"}})
            assert item["Item"]["state"] == {"S": "PENDING"}
            assert not poll_done.is_set(), "GetItem only returned after the SQS long poll ended"
    finally:
        poller_thread.join(timeout=30)

    assert poll_done.is_set()
    assert received == []
    sqs.delete_queue(QueueUrl=queue_url)


def test_standalone_server_prints_endpoint_and_serves() -> None:
    """``python -m runtime.localaws --port 0``: the entry point subprocess tests use."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.localaws", "--port", "0"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the standalone server printed nothing within 60 s"
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:"), endpoint
        ddb = boto3.client("dynamodb", endpoint_url=endpoint)
        _create_table(ddb, "standalone")
        assert "standalone" in ddb.list_tables()["TableNames"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_reset_and_context_manager() -> None:
    """``reset()`` empties moto. (moto's state is process global: this resets every server.)"""
    with LockedMotoServer() as server:
        assert server.serialize_dynamodb
        ddb = boto3.client("dynamodb", endpoint_url=server.endpoint)
        _create_table(ddb, "to-be-reset")
        server.reset()
        assert ddb.list_tables()["TableNames"] == []
    assert not server.running
