"""``result_storage=LocalFileSystem(basepath=...)``, ``sdk.results.ResultStore`` and
``sdk.filesystems.LocalFileSystem`` on a fresh moto in-process installation.

The oracle is Prefect 3's docs (advanced/results.mdx): "Result storage" (a task's or a
flow's ``result_storage``; tasks use their flow's storage), "Result filenames" (a
task's ``result_storage_key`` is the file name), "Reading persisted results"
(``ResultStore(result_storage=...).read(key=...).result``), and
``src/prefect/filesystems.py`` (``LocalFileSystem.read_path``/``write_path``, paths
outside ``basepath`` refused).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.errors import ResultNotFound
from runtime.models import TaskRunFilter
from runtime.payload_auth import PayloadAuthenticationError
from runtime.states import Completed, ResultRef, State
from sdk import flow, task
from sdk.filesystems import LocalFileSystem
from sdk.not_supported import NotSupportedError, PlannedFeatureError
from sdk.results import ResultStore, get_result_store


def stored_task_state(engine: DirectEngineClient, name_prefix: str) -> State:
    """The final state of the task run named ``name_prefix...`` as the store holds it
    (no value in memory: what another process reads)."""
    runs = engine.stores.runs.list_task_runs(TaskRunFilter()).items
    run = next(r for r in runs if r.name.startswith(name_prefix))
    state = engine.stores.runs.read_task_run(run.id).state
    assert state is not None and not state.has_data
    return state


class TestTaskAndFlowStorage:
    def test_a_task_result_is_a_file_named_by_its_storage_key(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        """results.mdx: ``result_storage_key="hello-{parameters[name]}.pickle"`` writes one
        file per name into the task's result storage; it reads back in another process."""
        storage = LocalFileSystem(basepath=str(tmp_path))

        @task(result_storage=storage, result_storage_key="hello-{parameters[name]}.pickle")
        def hello_world(name: str = "world") -> str:
            return f"hello {name}"

        @flow
        def my_flow() -> None:
            hello_world()
            hello_world(name="foo")

        my_flow()
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "hello-foo.pickle",
            "hello-world.pickle",
        ]
        state = stored_task_state(engine, "hello_world-1")
        assert state.details.result is not None
        assert state.details.result.storage_key == (tmp_path / "hello-foo.pickle").as_uri()
        assert state.result() == "hello foo"

    def test_result_storage_turns_persistence_on_and_a_json_result_is_sealed_too(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        """results.mdx: "Specifying a non-null value for ... ``result_storage`` ... will
        enable result persistence". Every result file carries a MAC (not plain JSON)."""

        @task(result_storage=LocalFileSystem(basepath=tmp_path), result_serializer="json")
        def numbers() -> list[int]:
            return [1, 2, 3]

        @flow
        def f() -> None:
            numbers()

        f()
        (path,) = tmp_path.iterdir()
        with pytest.raises(ValueError):
            json.loads(path.read_bytes())
        assert stored_task_state(engine, "numbers").result() == [1, 2, 3]

    def test_tasks_use_their_flows_storage_and_the_flow_result_goes_there(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        """results.mdx: "this task will use the flow's result storage"; a flow's
        ``result_storage`` persists the flow's own result there as well."""

        @task(persist_result=True, result_storage_key="my-result")
        def compute_value() -> dict[str, int]:
            return {"answer": 42}

        @flow(result_storage=LocalFileSystem(basepath=tmp_path))
        def my_flow() -> str:
            compute_value()
            return "done"

        state = my_flow(return_state=True)
        ref = state.details.result
        assert ref is not None and ref.storage_key is not None
        assert ref.storage_key.startswith(tmp_path.as_uri())
        assert (tmp_path / "my-result").is_file()
        record = ResultStore(result_storage=LocalFileSystem(basepath=tmp_path)).read("my-result")
        assert record.result == {"answer": 42}

    def test_a_cache_hit_loads_the_result_from_its_file(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        """A cached task with a local storage: the second call is Cached and its value
        comes from the file (removing the file makes the next call compute again)."""
        calls: list[int] = []

        @task(
            result_storage=LocalFileSystem(basepath=tmp_path),
            cache_key_fn=lambda ctx, params: f"sq-{params['x']}",
        )
        def square(x: int) -> int:
            calls.append(x)
            return x * x

        @flow
        def f() -> list[State]:
            return [square(3, return_state=True), square(3, return_state=True)]

        _, second = f()
        assert second.name == "Cached" and calls == [3]
        (path,) = tmp_path.iterdir()
        path.unlink()
        (third,) = f()[1:]
        assert third.result() == 9
        assert calls == [3, 3]

    def test_a_key_leading_outside_the_basepath_fails_the_task(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        """A rendered ``result_storage_key`` may not escape ``basepath`` (filesystems.py
        ``_resolve_path``: "outside of the base path")."""
        base = tmp_path / "results"

        @task(
            result_storage=LocalFileSystem(basepath=base), result_storage_key="../{parameters[n]}"
        )
        def one(n: str) -> int:
            return 1

        @flow
        def f() -> tuple[bool, str]:
            state = one("escaped", return_state=True)
            # returned as data: a returned failed state would fail the flow, as in Prefect
            return state.is_failed(), state.message or ""

        failed, message = f()
        assert failed
        assert "outside the result storage" in message
        assert not (tmp_path / "escaped").exists()

    def test_a_result_storage_key_alone_turns_persistence_on(
        self, engine: DirectEngineClient
    ) -> None:
        """results.mdx "Enabling result persistence": a non-null ``result_storage_key`` (or
        ``result_serializer``, or ``result_storage``) on a task enables persistence; the
        docs' ``hello-{parameters[name]}.pickle`` task sets nothing else."""

        @task(result_storage_key="hello-{parameters[name]}.pickle")
        def hello_world(name: str = "world") -> str:
            return f"hello {name}"

        @task(result_serializer="json")
        def as_json() -> list[int]:
            return [1]

        @flow
        def f() -> None:
            hello_world(name="foo")
            as_json()

        f()
        assert ResultStore().read("hello-foo.pickle").result == "hello foo"
        assert stored_task_state(engine, "as_json").result() == [1]
        assert task(lambda: 1, result_storage_key="k", persist_result=False).should_persist is False

    def test_a_block_reference_is_refused_at_decoration(self) -> None:
        """``result_storage="local-file-system/name"`` needs blocks: a TypeError that says so."""
        with pytest.raises(TypeError, match="later phase"):

            @task(result_storage="local-file-system/my-storage")
            def one() -> int:
                return 1

        with pytest.raises(TypeError, match="LocalFileSystem"):

            @flow(result_storage=42)
            def f() -> None:
                return None


class TestForgedReferences:
    def test_an_altered_result_file_is_refused(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        """A result file whose bytes changed fails its MAC and is never unpickled."""

        @task(result_storage=LocalFileSystem(basepath=tmp_path), result_storage_key="r")
        def one() -> int:
            return 1

        @flow
        def f() -> None:
            one()

        f()
        path = tmp_path / "r"
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")
        with pytest.raises(PayloadAuthenticationError, match="does not match"):
            stored_task_state(engine, "one").result()

    def test_a_reference_to_any_other_file_is_refused(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        """A run record is writable through the API: a ``file://`` reference to a file the
        engine did not write (here a JSON file) must not be read as a result."""
        secret = tmp_path / "config.json"
        secret.write_text('{"password": "hunter2"}')
        state = Completed()
        state.details.result = ResultRef(serializer="json", storage_key=secret.as_uri())
        with pytest.raises(PayloadAuthenticationError, match="no MAC"):
            state.result()

    def test_a_missing_file_says_where_it_was(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        state = Completed()
        state.details.result = ResultRef(serializer="pickle", storage_key=(tmp_path / "x").as_uri())
        with pytest.raises(ResultNotFound, match="only readable where it was written"):
            state.result()


class TestResultStore:
    def test_write_read_exists_in_a_local_directory(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        """``ResultStore.write`` / ``read`` / ``exists`` by key; metadata names the serializer."""
        store = ResultStore(result_storage=LocalFileSystem(basepath=tmp_path), serializer="json")
        assert not store.exists("k")
        store.write({"a": 1}, key="k")
        assert store.exists("k")
        record = store.read("k")
        assert record.result == {"a": 1}
        assert record.metadata.storage_key == "k"
        assert record.metadata.serializer.type == "json"
        assert repr(record.metadata.serializer) == "JSONSerializer(type='json')"
        with pytest.raises(ResultNotFound):
            store.read("missing")

    def test_without_storage_keys_name_objects_of_the_results_bucket(
        self, engine: DirectEngineClient
    ) -> None:
        """No ``result_storage``: a task's ``result_storage_key`` result is read by its key."""

        @task(persist_result=True, result_storage_key="answer-{parameters[n]}")
        def answer(n: int) -> dict[str, int]:
            return {"n": n}

        @task(persist_result=True, result_storage_key="text", result_serializer="json")
        def text() -> str:
            return "plain json"

        @flow
        def f() -> None:
            answer(7)
            text()

        f()
        store = ResultStore()
        assert store.read("answer-7").result == {"n": 7}
        assert store.read("text").result == "plain json"
        assert store.exists("answer-7") and not store.exists("answer-8")
        store.write([1], key="written")
        assert store.read("written").result == [1]

    def test_get_result_store_inside_a_task_uses_its_storage(
        self, engine: DirectEngineClient, tmp_path: Path
    ) -> None:
        storage = LocalFileSystem(basepath=tmp_path)

        @task(result_storage=storage)
        def where() -> Any:
            return get_result_store().result_storage

        @flow
        def f() -> Any:
            return where()

        assert f() == storage
        assert get_result_store().result_storage is None


class TestLocalFileSystem:
    def test_read_and_write_paths_under_the_basepath(self, tmp_path: Path) -> None:
        """filesystems.py: ``write_path`` creates parents and returns the path; ``read_path``
        reads it; a path outside ``basepath`` is refused."""
        fs = LocalFileSystem(basepath=str(tmp_path))
        written = fs.write_path("a/b.txt", b"content")
        assert written == str(tmp_path / "a" / "b.txt")
        assert fs.read_path("a/b.txt") == b"content"
        assert fs.read_path(str(tmp_path / "a" / "b.txt")) == b"content"
        with pytest.raises(ValueError, match="outside of the base path"):
            fs.read_path("../elsewhere")
        with pytest.raises(ValueError, match="does not exist"):
            fs.read_path("nope")

    def test_block_methods_are_planned(self, tmp_path: Path) -> None:
        """``.save()`` needs blocks (a later phase): the error says so; deployment storage
        is not supported and says what to use (``flow.deploy()``'s code bundles)."""
        with pytest.raises(PlannedFeatureError, match="blocks"):
            LocalFileSystem(basepath=tmp_path).save("my-storage", overwrite=True)
        with pytest.raises(NotSupportedError, match=r"flow\.deploy\(\)") as caught:
            LocalFileSystem(basepath=tmp_path).put_directory()
        assert not isinstance(caught.value, PlannedFeatureError)
