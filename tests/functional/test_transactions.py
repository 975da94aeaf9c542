"""``sdk.transactions``: commit, rollback, hooks, nesting and keyed records (moto in-process).

The oracle is Prefect 3: ``docs/v3/advanced/transactions.mdx`` (lifecycle, hooks,
idempotency, isolation) and ``src/prefect/transactions.py`` / ``src/prefect/task_engine.py``
(commit modes, nesting, ``stage``, ``handle_success``), cited per test.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.engine.transactions import TRANSACTION_TASK_KEY
from runtime.states import StateType
from sdk import flow, task
from sdk.transactions import (
    CommitMode,
    IsolationLevel,
    Transaction,
    TransactionState,
    get_transaction,
    transaction,
)


@pytest.fixture(autouse=True)
def _isolated_engine(engine: DirectEngineClient) -> DirectEngineClient:
    """Every test writes to its own installation (flows and standalone tasks alike)."""
    return engine


def test_a_failing_task_rolls_back_the_tasks_staged_before_it(tmp_path: Path) -> None:
    """transactions.mdx "Write your first transaction": quality_test fails, so the
    write_file task's on_rollback hook deletes the file although write_file succeeded."""
    side_effect = tmp_path / "side-effect.txt"
    calls: list[str] = []

    @task
    def write_file(contents: str) -> None:
        side_effect.write_text(contents)

    @write_file.on_rollback
    def del_file(txn: Transaction) -> None:
        calls.append("rollback")
        side_effect.unlink()

    @write_file.on_commit
    def confirm(txn: Transaction) -> None:
        calls.append("commit")

    @task
    def quality_test() -> None:
        if len(side_effect.read_text().splitlines()) < 2:
            raise ValueError("Not enough data!")

    @flow
    def pipeline(contents: str) -> None:
        with transaction():
            write_file(contents)
            quality_test()

    state = pipeline("hello world", return_state=True)
    assert state.type is StateType.FAILED
    assert not side_effect.exists() and calls == ["rollback"]

    calls.clear()
    state = pipeline("hello\nworld\n", return_state=True)
    assert state.type is StateType.COMPLETED
    assert side_effect.exists() and calls == ["commit"]


def test_rollback_hooks_run_newest_first_and_see_the_transactions_values() -> None:
    """transactions.py ``rollback``: hooks in reverse, then children in reverse;
    transactions.mdx "Access data within transactions": ``txn.get`` in a hook reads
    the value the flow ``set`` on the enclosing transaction."""
    seen: list[tuple[str, Any]] = []

    @task
    def step(name: str) -> str:
        return name

    @step.on_rollback
    def undo(txn: Transaction) -> None:
        seen.append(("undo", txn.get("filename")))

    @task
    def boom() -> None:
        raise RuntimeError("boom")

    @flow
    def pipeline() -> TransactionState:
        with transaction() as txn:
            txn.set("filename", "data.csv")
            step("a")
            step("b")
            with contextlib.suppress(RuntimeError):  # caught: rolled back all the same
                boom()
            return txn.state

    assert pipeline() is TransactionState.ROLLED_BACK
    assert seen == [("undo", "data.csv"), ("undo", "data.csv")]


def test_commit_hooks_wait_for_the_outermost_transaction() -> None:
    """transactions.mdx: "A task run persists its result only at transaction commit
    time"; transactions.py ``__exit__``: a LAZY child leaves committing to its parent."""
    events: list[str] = []

    @task(on_commit=[lambda txn: events.append("committed")])
    def step() -> int:
        events.append("ran")
        return 1

    @flow
    def pipeline() -> None:
        with transaction() as outer:
            with transaction() as inner:
                step()
            events.append(f"inner exited {inner.state.name}")
            assert inner in outer.children
        events.append(f"outer exited {outer.state.name}")

    pipeline()
    assert events == ["ran", "inner exited ACTIVE", "committed", "outer exited COMMITTED"]


def test_eager_child_commits_at_its_own_exit_and_off_rolls_back() -> None:
    """transactions.py ``__exit__``: EAGER commits at once; OFF at the top rolls back."""
    events: list[str] = []

    @task(
        on_commit=[lambda txn: events.append("commit")],
        on_rollback=[lambda txn: events.append("rollback")],
    )
    def step() -> None:
        return None

    @flow
    def eager() -> None:
        with transaction():
            with transaction(commit_mode=CommitMode.EAGER):
                step()
            events.append("after child")

    eager()
    assert events == ["commit", "after child"]

    events.clear()

    @flow
    def off() -> None:
        with transaction(commit_mode=CommitMode.OFF) as txn:
            step()
        assert txn.is_rolled_back()

    off()
    assert events == ["rollback"]


def test_a_rolled_back_child_rolls_its_parent_back() -> None:
    """transactions.py ``reset``: a child that rolled back rolls back its parent."""
    events: list[str] = []

    @task(on_rollback=[lambda txn: events.append("undo first")])
    def first() -> None:
        return None

    @flow
    def pipeline() -> tuple[str, str]:
        with transaction() as outer:
            first()
            try:
                with transaction() as inner:
                    raise KeyError("inner failed")
            except KeyError:
                pass
        return outer.state.name, inner.state.name

    assert pipeline() == ("ROLLED_BACK", "ROLLED_BACK")
    assert events == ["undo first"]


def test_a_failing_submitted_task_rolls_back_the_transaction() -> None:
    """Tasks submitted inside a transaction join it (Prefect copies the context into
    the task runner's thread), so their failure rolls it back too."""
    events: list[str] = []

    @task(on_rollback=[lambda txn: events.append("undo")])
    def ok() -> None:
        return None

    @task
    def bad() -> None:
        raise ValueError("bad")

    @flow
    def pipeline() -> str:
        with transaction() as txn:
            ok.submit().wait()
            bad.submit().wait()
        return txn.state.name

    assert pipeline() == "ROLLED_BACK"
    assert events == ["undo"]


def test_a_keyed_transaction_runs_once(engine: DirectEngineClient) -> None:
    """transactions.mdx "Idempotency": the second run with the key finds the committed
    record and exits early; the record is the cache store's, written at commit."""
    ran: list[int] = []

    @task
    def download() -> str:
        ran.append(1)
        return "some data"

    @flow
    def pipeline() -> bool:
        with transaction(key="download-and-write-data") as txn:
            if txn.is_committed():
                return False
            download()
        return True

    assert engine.cache.read("download-and-write-data") is None
    assert pipeline() is True
    record = engine.cache.read("download-and-write-data")
    assert record is not None and record.task_key == TRANSACTION_TASK_KEY
    assert pipeline() is False
    assert ran == [1]


def test_overwrite_runs_again_and_rewrites_the_record(engine: DirectEngineClient) -> None:
    """transactions.py ``begin``: ``overwrite`` skips the lookup, commit writes anew."""
    with transaction(key="k1") as txn:
        txn.stage("first")
    assert txn.is_committed() and Transaction(key="k1").read() == "first"
    with transaction(key="k1") as again:
        assert again.is_committed() and again.read() == "first"
    with transaction(key="k1", overwrite=True) as fresh:
        assert fresh.is_active()
        fresh.stage("second")
    with transaction(key="k1") as last:
        assert last.read() == "second"


def test_a_cached_tasks_record_is_written_at_the_commit(engine: DirectEngineClient) -> None:
    """transactions.mdx: a task's record is written at the transaction's commit;
    rolled back, nothing is written and the key's lock is given up."""

    @task(cache_key_fn=lambda ctx, params: f"square-{params['x']}")
    def square(x: int) -> int:
        return x * x

    @flow
    def committed() -> bool:
        with transaction():
            square(2)
            written_before_commit = engine.cache.read("square-2") is not None
        return written_before_commit

    assert committed() is False
    record = engine.cache.read("square-2")
    assert record is not None and record.task_key == square.task_key

    @task
    def fail() -> None:
        raise ValueError("no")

    @flow
    def rolled_back() -> None:
        with transaction():
            square(3)
            fail()

    assert rolled_back(return_state=True).type is StateType.FAILED
    assert engine.cache.read("square-3") is None
    assert engine.cache.try_lock("square-3", "someone-else", 5.0).acquired  # released


def test_serializable_takes_the_cache_stores_lock(engine: DirectEngineClient) -> None:
    """transactions.mdx "Handling race conditions": SERIALIZABLE locks the key until the
    commit; here that lock is the cache store's conditional-write lease."""
    with transaction(key="ser", isolation_level=IsolationLevel.SERIALIZABLE) as txn:
        refused = engine.cache.try_lock("ser", "another-owner", 5.0)
        assert not refused.acquired and refused.holder == txn._holder
        txn.stage(41)
    assert engine.cache.read("ser") is not None
    assert not engine.cache.try_lock("ser", "another-owner", 5.0).acquired  # a record now
    with transaction(key="ser", isolation_level=IsolationLevel.SERIALIZABLE) as again:
        assert again.is_committed() and again.read() == 41


def test_serializable_second_transaction_waits_and_finds_the_record(
    engine: DirectEngineClient,
) -> None:
    """transactions.mdx: a SERIALIZABLE transaction keeps others from starting until
    it completes; the second then sees the committed record."""
    holding = threading.Event()
    release = threading.Event()
    seen: dict[str, Any] = {}

    def first() -> None:
        with transaction(key="race", isolation_level=IsolationLevel.SERIALIZABLE) as txn:
            holding.set()
            assert release.wait(10)
            txn.stage("winner")

    def second() -> None:
        with transaction(key="race", isolation_level=IsolationLevel.SERIALIZABLE) as txn:
            seen["committed"] = txn.is_committed()
            seen["value"] = txn.read()

    t1 = threading.Thread(target=first)
    t1.start()
    assert holding.wait(10)
    t2 = threading.Thread(target=second)
    t2.start()
    t2.join(0.3)
    assert t2.is_alive()  # blocked on the lock, not finished
    release.set()
    t1.join(10)
    t2.join(10)
    assert seen == {"committed": True, "value": "winner"}


def test_values_and_get_transaction() -> None:
    """transactions.py ``set``/``get``: copies, parent lookup, default, unknown key."""
    assert get_transaction() is None
    with transaction() as outer:
        assert get_transaction() is outer
        outer.set("items", [1, 2])
        outer.get("items").append(3)
        assert outer.get("items") == [1, 2]
        with transaction() as inner:
            assert get_transaction() is inner and inner.get("items") == [1, 2]
            assert inner.get("missing", "dflt") == "dflt"
            with pytest.raises(ValueError, match="unknown key: missing"):
                inner.get("missing")
        assert get_transaction() is outer
    assert get_transaction() is None and outer.is_committed()


def test_on_commit_outside_a_transaction_runs_when_the_task_completes() -> None:
    """task_engine.py: every task run has its own transaction; alone, it commits at
    once, so ``on_commit`` runs when the task completes and receives the transaction."""
    got: list[Any] = []

    @task(on_commit=[got.append])
    def alone() -> int:
        return 5

    assert alone() == 5
    assert len(got) == 1 and isinstance(got[0], Transaction) and got[0].is_committed()


def test_registered_hooks_survive_with_options() -> None:
    """tasks.py ``with_options``: Prefect passes ``on_commit=self.on_commit_hooks`` (and
    the rollback hooks) to the copy, so hooks registered with the decorators are kept."""
    got: list[str] = []

    @task
    def step() -> None:
        return None

    @step.on_commit
    def committed(txn: Transaction) -> None:
        got.append("commit")

    renamed = step.with_options(name="renamed")
    assert renamed.on_commit_hooks == [committed] and renamed.on_rollback_hooks == []
    renamed()
    assert got == ["commit"]


def test_bad_arguments_are_refused() -> None:
    """Wrong types name the argument (Prefect validates its model the same way)."""
    with pytest.raises(TypeError, match="commit_mode"):
        transaction(commit_mode="LAZY").__enter__()  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="isolation_level"):
        Transaction(isolation_level="SERIALIZABLE")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        Transaction(key="")
    with pytest.raises(TypeError, match="store"):
        Transaction(key="k", store=object())
    with pytest.raises(TypeError, match="on_commit"):
        task(on_commit=lambda txn: None)(lambda: None)
    with pytest.raises(TypeError, match="on_rollback"):
        task(lambda: None).on_rollback(42)  # type: ignore[arg-type]
    with transaction() as txn, pytest.raises(RuntimeError, match="once"):
        txn.__enter__()
