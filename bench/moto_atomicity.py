"""How often a conditional-write race has more than one winner on moto, locked and bare.

Runs the PENDING -> RUNNING claim (``SET #s = :running, v = v + 1`` if
``#s = :pending AND v = :zero``) with THREADS threads released together by a
barrier, TRIALS times, and counts the trials with more than one winner.
Real DynamoDB has exactly one winner per trial. Each case runs bare and
locked (``serialize_dynamodb`` / ``serialize_inprocess_dynamodb``):

* ``server thread``: :class:`LockedMotoServer` in this process (as the
  integration tier runs it), at the interpreter's default thread switch
  interval and at 1 microsecond. Server and clients share one GIL, so at the
  default interval the interleaving is rare; 1 us makes it show.
* ``server process``: ``python -m runtime.localaws`` in a child
  process (as a stock ``moto_server`` runs), own GIL.
* ``mock_aws``: in-process moto, at both switch intervals.

This script prints figures and asserts nothing: the bare behaviour is
nondeterministic and depends on the machine (CPU count, load).

    .venv/bin/python bench/moto_atomicity.py [--trials 30] [--threads 16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from runtime.localaws import (
    LockedMotoServer,
    serialize_inprocess_dynamodb,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIENT_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=4)


def _claim(ddb: Any, table: str, key: str) -> bool:
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
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return False
    return True


def race_once(clients: list[Any], table: str, key: str) -> int:
    """Release one thread per client together on the same claim; return how many won."""
    barrier = threading.Barrier(len(clients))
    wins: list[bool] = []

    def racer(ddb: Any) -> None:
        barrier.wait(timeout=30)
        wins.append(_claim(ddb, table, key))

    pool = [threading.Thread(target=racer, args=(ddb,)) for ddb in clients]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(wins)


def run_trials(endpoint_url: str | None, table: str, trials: int, threads: int) -> list[int]:
    """Create ``table``, run the race ``trials`` times; return the winner count of each trial."""
    clients = [
        boto3.client("dynamodb", endpoint_url=endpoint_url, config=CLIENT_CONFIG)
        for _ in range(threads)
    ]
    setup = clients[0]
    setup.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    winners: list[int] = []
    for trial in range(trials):
        key = f"run-{trial}"
        setup.put_item(
            TableName=table, Item={"pk": {"S": key}, "state": {"S": "PENDING"}, "v": {"N": "0"}}
        )
        winners.append(race_once(clients, table, key))
    return winners


@contextlib.contextmanager
def switch_interval(seconds: float | None) -> Iterator[None]:
    previous = sys.getswitchinterval()
    if seconds is not None:
        sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def report(label: str, winners: list[int], elapsed: float) -> None:
    multi = sum(1 for n in winners if n > 1)
    print(
        f"{label:<38} multi-winner trials: {multi:>2}/{len(winners)}"
        f"  max winners: {max(winners)}  zero-winner trials: {winners.count(0)}"
        f"  ({elapsed:.1f} s)",
        flush=True,
    )


@contextlib.contextmanager
def server_process(serialize_dynamodb: bool) -> Iterator[str]:
    """The standalone entry point in a child process; yields its endpoint."""
    command = [sys.executable, "-m", "runtime.localaws", "--port", "0"]
    if not serialize_dynamodb:
        command.append("--no-serialize-dynamodb")
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)

    print(
        f"{args.threads} threads x {args.trials} trials, one conditional UpdateItem each;"
        f" {os.cpu_count()} CPUs"
    )
    table = 0

    def measure(label: str, endpoint_url: str | None) -> None:
        nonlocal table
        table += 1
        started = time.perf_counter()
        winners = run_trials(endpoint_url, f"bench-{table}", args.trials, args.threads)
        report(label, winners, time.perf_counter() - started)

    for interval in (None, 1e-6):
        when = "default switch" if interval is None else "switch 1us"
        for locked in (False, True):
            how = "locked" if locked else "bare"
            with LockedMotoServer(serialize_dynamodb=locked) as server, switch_interval(interval):
                measure(f"server thread, {how}, {when}", server.endpoint)

    for locked in (False, True):
        how = "locked" if locked else "bare"
        with server_process(serialize_dynamodb=locked) as endpoint:
            measure(f"server process, {how}", endpoint)

    for interval in (None, 1e-6):
        when = "default switch" if interval is None else "switch 1us"
        for locked in (False, True):
            how = "locked" if locked else "bare"
            serialize = serialize_inprocess_dynamodb() if locked else contextlib.nullcontext()
            with mock_aws(), serialize, switch_interval(interval):
                measure(f"mock_aws, {how}, {when}", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
