"""Result storage (S3 + inline) and the cache table, against moto in-process.

Uses the shared ``aws_backend`` fixture (tests/conftest.py): ``mock_aws`` with
fake credentials by default, or the endpoint in ``AWS_ENDPOINT_URL`` when one
was set before pytest started (LocalStack). The DynamoDB wrapper is built with
``serialize_requests=True``, as ``runtime.stores.Stores`` does for in-process
moto, so the threaded race below sees atomic conditional writes.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from runtime.errors import NotFound
from runtime.payload_auth import (
    MAGIC,
    PayloadAuthenticationError,
    PayloadKey,
    PayloadKeyError,
    load_payload_key,
)
from runtime.resources import ResourceSpecs, provision, specs
from runtime.results import ResultNotFound, ResultStore
from runtime.serializers import SerializationError
from runtime.settings import Settings
from runtime.states import ResultRef
from runtime.stores.cache import CacheLockLost, CacheRecord, CacheStore
from runtime.stores.dynamo import Dynamo

KEY = PayloadKey.from_text("k" * 64, source="tests")


@dataclass
class Env:
    specs: ResourceSpecs
    s3: Any
    results: ResultStore
    cache: CacheStore

    def persist(self, value: Any, **kwargs: Any) -> ResultRef:
        """``results.persist`` with the test's payload key (pickles are sealed)."""
        return self.results.persist(value, payload_key=KEY, **kwargs)

    def load(self, ref: ResultRef) -> Any:
        """``results.load`` with the test's payload key."""
        return self.results.load(ref, payload_key=KEY)


@pytest.fixture
def env(aws_backend: object, prefix: str) -> Iterator[Env]:
    resource_specs = provision(specs(prefix))
    session = boto3.session.Session()
    s3 = session.client("s3")
    db = Dynamo(session.client("dynamodb"), serialize_requests=True)
    yield Env(
        specs=resource_specs,
        s3=s3,
        results=ResultStore(s3, resource_specs.results.name, inline_max_bytes=1024),
        cache=CacheStore(db, resource_specs.cache),
    )


def put(cache: CacheStore, rec: CacheRecord, owner: str) -> None:
    """Write ``rec`` as its owner does: lock the key, then write."""
    assert cache.lock(rec.key, owner, 60)
    cache.write(rec.key, rec, owner)


NOW = datetime(2030, 1, 1, tzinfo=UTC)
PAST = datetime(2020, 1, 1, tzinfo=UTC)


def ref(n: int = 1) -> ResultRef:
    return ResultRef(serializer="json", inline=str(n), size=1)


def record(key: str, task_key: str = "t", expires_at: datetime | None = None) -> CacheRecord:
    return CacheRecord(
        key=key, result=ref(), task_key=task_key, task_run_id="tr-1", expires_at=expires_at
    )


# ---------------------------------------------------------------------- results


class TestResults:
    def test_small_results_are_inline(self, env: Env) -> None:
        for serializer in ("json", "pickle"):
            r = env.persist({"a": [1, 2, 3]}, serializer=serializer)
            assert r.inline is not None and r.storage_key is None
            assert r.serializer == serializer and r.size > 0
            assert env.load(r) == {"a": [1, 2, 3]}
        assert env.persist([1, 2], serializer="json").inline == "[1,2]"

    def test_large_results_go_to_s3(self, env: Env) -> None:
        value = "x" * 5000
        for serializer in ("json", "pickle"):
            r = env.persist(value, serializer=serializer)
            assert r.inline is None
            assert r.storage_key is not None
            assert r.storage_key.startswith(f"s3://{env.specs.results.name}/results/")
            assert env.results.exists(r.storage_key)
            assert env.load(r) == value
            assert r.size >= 5000

    def test_threshold_is_on_the_stored_text(self, env: Env) -> None:
        store = ResultStore(env.s3, env.specs.results.name, inline_max_bytes=10)
        at_limit = store.persist("a" * 8, serializer="json")  # '"aaaaaaaa"' = 10 bytes
        over = store.persist("a" * 9, serializer="json")
        assert at_limit.inline == '"aaaaaaaa"'
        assert over.inline is None and over.storage_key is not None
        never_inline = ResultStore(env.s3, env.specs.results.name, inline_max_bytes=0)
        assert never_inline.persist(1, serializer="json").storage_key is not None

    def test_explicit_storage_key_always_goes_to_s3(self, env: Env) -> None:
        r = env.persist({"small": True}, serializer="json", storage_key="reports/day-1")
        bucket = env.specs.results.name
        assert r.inline is None
        assert r.storage_key == f"s3://{bucket}/results/reports/day-1"
        # Users find it where they expect it, in plain JSON.
        body = env.s3.get_object(Bucket=bucket, Key="results/reports/day-1")["Body"].read()
        assert body == b'{"small":true}'
        assert env.results.exists("reports/day-1")
        assert not env.results.exists("reports/day-2")
        assert env.load(r) == {"small": True}
        # Writing the same key again overwrites it.
        again = env.persist({"small": False}, serializer="json", storage_key="reports/day-1")
        assert again.storage_key == r.storage_key
        assert env.load(r) == {"small": False}

    def test_pickle_round_trip_restores_types(self, env: Env) -> None:
        value = {"when": NOW, "set": {1, 2}, "tuple": (1, "a"), "fn": None}
        assert env.load(env.persist(value)) == value
        big = {"blob": bytes(range(256)) * 50}
        r = env.persist(big, serializer="pickle")
        assert r.storage_key is not None
        assert env.load(r) == big

    def test_json_round_trip_gives_plain_values(self, env: Env) -> None:
        r = env.persist({"when": NOW, "items": (1, 2)}, serializer="json")
        assert env.load(r) == {"when": "2030-01-01T00:00:00Z", "items": [1, 2]}

    def test_json_refuses_what_it_cannot_serialize(self, env: Env) -> None:
        with pytest.raises(SerializationError, match='result_serializer="pickle"'):
            env.persist(threading.Lock(), serializer="json")
        with pytest.raises(ValueError, match="'yaml'"):
            env.persist(1, serializer="yaml")

    def test_missing_object_raises_result_not_found(self, env: Env) -> None:
        r = env.persist("y" * 4000, serializer="pickle")
        assert r.storage_key is not None
        bucket, key = r.storage_key.removeprefix("s3://").split("/", 1)
        env.s3.delete_object(Bucket=bucket, Key=key)
        assert not env.results.exists(r.storage_key)
        with pytest.raises(ResultNotFound, match=r.storage_key) as info:
            env.load(r)
        assert isinstance(info.value, NotFound)
        assert info.value.status_code == 404
        gone = ResultRef(serializer="json", storage_key="s3://no-such-bucket-sf/results/x")
        with pytest.raises(ResultNotFound, match="no-such-bucket-sf"):
            env.load(gone)


# ---------------------------------------------------------------------- cache


class TestCacheReadWrite:
    def test_miss_lock_write_hit(self, env: Env) -> None:
        cache = env.cache
        assert cache.read("k") is None
        assert cache.lock("k", "owner-a", lock_seconds=60)
        assert cache.read("k") is None  # a pending lock is a miss
        cache.write("k", record("k"), "owner-a")
        hit = cache.read("k")
        assert hit is not None
        assert hit.result == ref() and hit.task_key == "t" and hit.task_run_id == "tr-1"
        # A valid record blocks the lock (read it instead).
        assert not cache.lock("k", "owner-b", lock_seconds=60)

    def test_ttl_attribute_follows_expires_at(self, env: Env) -> None:
        put(env.cache, record("e", expires_at=NOW), "anyone")
        put(env.cache, record("n"), "anyone")
        table = env.specs.cache.name
        items = {k: env.cache.db.get(table, {"cache_key": k}) for k in ("e", "n")}  # raw items
        assert items["e"] is not None and items["e"]["ttl_at"] == int(NOW.timestamp())
        assert items["n"] is not None and "ttl_at" not in items["n"]

    def test_expired_record_is_a_miss_and_can_be_relocked(self, env: Env) -> None:
        cache = env.cache
        put(cache, record("k", expires_at=NOW), "x")
        assert cache.read("k", now=NOW - timedelta(seconds=1)) is not None
        assert cache.read("k", now=NOW) is None
        assert not cache.lock("k", "a", 60, now=NOW - timedelta(seconds=1))
        assert cache.lock("k", "a", 60, now=NOW + timedelta(seconds=1))

    def test_live_lock_blocks_others_stale_lock_is_taken_over(self, env: Env) -> None:
        cache = env.cache
        assert cache.lock("k", "a", lock_seconds=30, now=NOW)
        assert cache.lock("k", "a", lock_seconds=30, now=NOW)  # re-entrant for the owner
        assert not cache.lock("k", "b", lock_seconds=30, now=NOW + timedelta(seconds=29))
        assert cache.lock("k", "b", lock_seconds=30, now=NOW + timedelta(seconds=31))
        # a's lock was taken over: a may no longer write, b may.
        with pytest.raises(CacheLockLost, match="'a'"):
            cache.write("k", record("k"), "a")
        cache.write("k", record("k"), "b")
        assert cache.read("k") is not None

    def test_write_needs_the_owners_lock(self, env: Env) -> None:
        """Only the owner of the key's lock writes its record (issue 7, item 1)."""
        with pytest.raises(CacheLockLost, match="not locked"):
            env.cache.write("fresh", record("fresh"), "whoever")  # no lock at all
        assert env.cache.read("fresh") is None
        assert env.cache.lock("fresh", "owner", 60)
        with pytest.raises(CacheLockLost, match="now held by owner"):
            env.cache.write("fresh", record("fresh"), "whoever")  # someone else's lock
        env.cache.write("fresh", record("fresh"), "owner")
        assert env.cache.read("fresh") is not None
        with pytest.raises(ValueError, match="does not match"):
            env.cache.write("one", record("other"), "whoever")
        # Over an existing record without a lock: refused.
        with pytest.raises(CacheLockLost):
            env.cache.write("fresh", record("fresh"), "owner")

    def test_refused_lock_names_the_live_holder(self, env: Env) -> None:
        cache = env.cache
        won = cache.try_lock("k", "a", 30, now=NOW)
        assert won.acquired and won.holder == "a"
        refused = cache.try_lock("k", "b", 30, now=NOW + timedelta(seconds=1), refresh=True)
        assert not refused.acquired
        assert refused.holder == "a" and refused.lock_until == NOW.timestamp() + 30
        cache.write("k", record("k"), "a")
        by_record = cache.try_lock("k", "b", 30)
        assert not by_record.acquired and by_record.holder is None  # a live record: read it

    def test_refresh_takes_the_key_over_a_valid_record(self, env: Env) -> None:
        cache = env.cache
        put(cache, record("k"), "a")
        assert not cache.lock("k", "b", 60)
        assert cache.lock("k", "b", 60, refresh=True)
        assert cache.read("k") is None
        # ... but not over someone else's live lock.
        assert not cache.lock("k", "c", 60, refresh=True)
        new = record("k").model_copy(update={"result": ref(2)})
        cache.write("k", new, "b")
        hit = cache.read("k")
        assert hit is not None and hit.result == ref(2)

    def test_unlock_only_by_owner(self, env: Env) -> None:
        cache = env.cache
        assert cache.lock("k", "a", 60)
        assert not cache.unlock("k", "b")
        assert not cache.lock("k", "b", 60)
        assert cache.unlock("k", "a")
        assert not cache.unlock("k", "a")
        assert cache.lock("k", "b", 60)
        cache.write("k", record("k"), "b")
        assert not cache.unlock("k", "b")  # a record is not a lock
        assert cache.read("k") is not None

    def test_lock_seconds_must_be_positive(self, env: Env) -> None:
        with pytest.raises(ValueError):
            env.cache.lock("k", "a", 0)


class TestWaitFor:
    def test_returns_the_winners_record(self, env: Env) -> None:
        cache = env.cache
        assert cache.lock("k", "winner", 30)

        def finish() -> None:
            time.sleep(0.3)
            cache.write("k", record("k"), "winner")

        thread = threading.Thread(target=finish)
        thread.start()
        started = time.monotonic()
        got = cache.wait_for("k", timeout=10, poll=0.02)
        thread.join()
        assert got is not None and got.key == "k"
        assert time.monotonic() - started < 5

    def test_returns_none_when_the_winner_gives_up(self, env: Env) -> None:
        cache = env.cache
        assert cache.lock("k", "winner", 30)
        timer = threading.Timer(0.2, cache.unlock, args=("k", "winner"))
        timer.start()
        assert cache.wait_for("k", timeout=10, poll=0.02) is None
        timer.join()
        assert cache.lock("k", "waiter", 30)  # the waiter takes over

    def test_returns_none_when_the_lock_expires(self, env: Env) -> None:
        cache = env.cache
        assert cache.lock("k", "dead", lock_seconds=0.3)
        started = time.monotonic()
        assert cache.wait_for("k", timeout=10, poll=0.02) is None
        assert 0.1 < time.monotonic() - started < 5
        assert cache.lock("k", "waiter", 30)

    def test_timeout_and_immediate_answers(self, env: Env) -> None:
        cache = env.cache
        assert cache.wait_for("nothing", timeout=5) is None  # no lock: compute now
        put(cache, record("done"), "x")
        assert cache.wait_for("done", timeout=5) is not None
        assert cache.lock("busy", "holder", 60)
        started = time.monotonic()
        assert cache.wait_for("busy", timeout=0.2, poll=0.05) is None
        assert time.monotonic() - started >= 0.2


class TestListAndClear:
    @pytest.fixture
    def filled(self, env: Env) -> CacheStore:
        cache = env.cache
        for i in range(3):
            rec = record(f"a{i}", task_key="task-a")
            rec.created = NOW + timedelta(seconds=i)
            put(cache, rec, "x")
        put(cache, record("b0", task_key="task-b"), "x")
        put(cache, record("old", task_key="task-b", expires_at=PAST), "x")
        assert cache.lock("pending", "someone", 60)
        return cache

    def test_list(self, filled: CacheStore) -> None:
        assert [r.key for r in filled.list("task-a")] == ["a2", "a1", "a0"]
        assert [r.key for r in filled.list("task-a", limit=2)] == ["a2", "a1"]
        assert {r.key for r in filled.list()} == {"a0", "a1", "a2", "b0"}
        assert {r.key for r in filled.list("task-b", include_expired=True)} == {"b0", "old"}
        assert filled.list("task-c") == []

    def test_clear_one_key(self, filled: CacheStore) -> None:
        assert filled.clear(key="a1") == 1
        assert filled.clear(key="a1") == 0
        assert filled.read("a1") is None
        assert filled.clear(key="a0", task_key="task-b") == 0  # not that task's record
        assert filled.read("a0") is not None

    def test_clear_a_task(self, filled: CacheStore) -> None:
        assert filled.clear(task_key="task-a") == 3
        assert {r.key for r in filled.list()} == {"b0"}
        assert not filled.lock("pending", "other", 60)  # locks are not touched

    def test_clear_everything(self, filled: CacheStore) -> None:
        assert filled.clear() == 6
        assert filled.list(include_expired=True) == []
        assert filled.lock("pending", "other", 60)


# ---------------------------------------------------------------------- concurrency


def _race_lock(cache: CacheStore, key: str, contenders: int) -> list[bool]:
    """``contenders`` threads released together call ``lock(key)``; their answers."""
    barrier = threading.Barrier(contenders)
    results: list[bool] = []
    guard = threading.Lock()

    def contender(n: int) -> None:
        barrier.wait()
        won = cache.lock(key, f"owner-{n}", lock_seconds=60)
        with guard:
            results.append(won)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_lock_has_exactly_one_winner(env: Env) -> None:
    """8 threads race ``lock()`` on one key, 20 rounds: exactly one True each round."""
    for round_ in range(20):
        results = _race_lock(env.cache, f"race-{round_}", 8)
        assert sorted(results) == [False] * 7 + [True], f"round {round_}: {results}"


def test_concurrent_runs_compute_once(env: Env) -> None:
    """The engine's loop: 6 racing runs of the same key compute once, all get the value."""
    cache, results = env.cache, env.results
    computed: list[int] = []
    values: list[Any] = []
    guard = threading.Lock()
    barrier = threading.Barrier(6)

    def run(n: int) -> None:
        owner = f"run-{n}"
        barrier.wait()
        rec = cache.read("shared")
        while rec is None:
            if cache.lock("shared", owner, lock_seconds=30):
                with guard:
                    computed.append(n)
                time.sleep(0.2)  # the slow computation
                rec = CacheRecord(
                    key="shared",
                    result=results.persist({"answer": 42}, serializer="json"),
                    task_key="t",
                )
                cache.write("shared", rec, owner)
                break
            rec = cache.wait_for("shared", timeout=10, poll=0.02)
        with guard:
            values.append(results.load(rec.result))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(computed) == 1
    assert values == [{"answer": 42}] * 6


def test_a_failing_winner_hands_over_to_a_waiter(env: Env) -> None:
    cache = env.cache
    assert cache.lock("k", "winner", 30)
    got: list[CacheRecord | None] = []

    def waiter() -> None:
        rec = cache.wait_for("k", timeout=10, poll=0.02)
        if rec is None and cache.lock("k", "waiter", 30):
            cache.write("k", record("k"), "waiter")
            rec = cache.read("k")
        got.append(rec)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)
    assert cache.unlock("k", "winner")  # the computation failed
    thread.join()
    assert got and got[0] is not None and got[0].key == "k"


# ---------------------------------------------------------------------- payload authentication


class TestAuthenticatedPickles:
    def test_pickles_are_sealed_inline_and_in_s3(self, env: Env) -> None:
        for value in ({"a": {1, 2}}, "z" * 5000):  # inline, then S3
            ref = env.persist(value, serializer="pickle")
            assert env.results.load_bytes(ref).startswith(MAGIC)
            assert env.load(ref) == value
        assert not env.results.load_bytes(env.persist([1], serializer="json")).startswith(MAGIC)

    def test_a_pickle_is_never_persisted_or_loaded_without_a_key(self, env: Env) -> None:
        with pytest.raises(ValueError, match="payload key"):
            env.results.persist(1, serializer="pickle")
        ref = env.persist(1, serializer="pickle")
        with pytest.raises(PayloadAuthenticationError, match="without the payload key"):
            env.results.load(ref)
        assert env.results.load(env.persist([1], serializer="json")) == [1]  # json needs none

    def test_a_result_written_with_another_key_raises_a_clear_error(self, env: Env) -> None:
        other = PayloadKey.from_text("o" * 64, source="another installation")
        ref = env.results.persist("x" * 5000, serializer="pickle", payload_key=other)
        assert ref.storage_key is not None
        with pytest.raises(PayloadAuthenticationError, match=f"{ref.storage_key} failed"):
            env.load(ref)

    def test_a_replaced_s3_object_is_refused(self, env: Env) -> None:
        ref = env.persist("y" * 5000, serializer="pickle")
        assert ref.storage_key is not None
        bucket, key = ref.storage_key.removeprefix("s3://").split("/", 1)
        env.s3.put_object(Bucket=bucket, Key=key, Body=pickle.dumps("forged"))
        with pytest.raises(PayloadAuthenticationError, match="no MAC"):
            env.load(ref)


def test_provisioning_creates_the_secret_the_engine_reads(
    aws_backend: object, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In AWS the key is the secret ``<prefix>/payload-key``; re-provisioning keeps it."""
    resource_specs = provision(specs(prefix))
    provision(resource_specs)
    monkeypatch.delenv("STRATOFLOW_PAYLOAD_KEY_FILE", raising=False)
    monkeypatch.setenv("STRATOFLOW_PAYLOAD_KEY_SECRET", resource_specs.payload_key.name)
    key = load_payload_key(Settings(prefix=prefix))
    assert key.source == f"secret {prefix}/payload-key"
    assert load_payload_key(Settings(prefix=prefix)).key_id == key.key_id
    with pytest.raises(PayloadKeyError, match="cannot read the payload key secret 'nope'"):
        load_payload_key(Settings(prefix=prefix, payload_key_secret="nope"))
