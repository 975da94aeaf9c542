"""Prefect's module paths: ``sdk.utilities.annotations``, ``sdk.tasks.task_input_hash``,
``sdk.exceptions``, run on a fresh moto in-process installation (the ``engine`` fixture).

The oracle is Prefect 3's source: ``src/prefect/utilities/annotations.py`` (``quote``),
``src/prefect/futures.py`` (``_resolve_futures`` stops at a ``quote``),
``src/prefect/task_engine.py`` (``_resolve_parameters`` removes annotations),
``src/prefect/tasks.py`` (``task_input_hash``) and ``src/prefect/exceptions.py``.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.models import TaskRunFilter
from runtime.states import Running
from sdk import flow, task
from sdk.exceptions import (
    MappingLengthMismatch,
    MappingMissingIterable,
    MissingResult,
    ObjectAlreadyExists,
    ObjectNotFound,
    ParameterBindError,
    PrefectException,
    StratoflowException,
    UnfinishedRun,
)
from sdk.logging import disable_run_logger, get_logger
from sdk.tasks import task_input_hash
from sdk.utilities.annotations import allow_failure, opaque, quote, unmapped


def task_runs_by_name(engine: DirectEngineClient) -> dict[str, Any]:
    page = engine.stores.runs.list_task_runs(TaskRunFilter())
    return {r.name: r for r in page.items}


class TestQuote:
    def test_a_quoted_future_reaches_the_task_unresolved_and_is_no_upstream(
        self, engine: DirectEngineClient
    ) -> None:
        """Prefect: ``quote`` - "do not resolve, do not traverse" (annotations.py ``opaque``
        docstring); the task receives the wrapped value itself (task_engine.py resolves
        parameters with ``remove_annotations=True``) and no dependency is tracked
        (futures.py ``_collect_futures`` stops inside a quote)."""
        release = threading.Event()

        @task
        def slow() -> int:
            release.wait(30)
            return 1

        @task
        def look(payload: Any) -> str:
            inner = payload["f"]
            kind = type(inner).__name__
            release.set()  # the quoted future was not waited for: this task ran first
            return kind

        @flow
        def f() -> str:
            future = slow.submit()
            return look(quote({"f": future}))

        assert f() == "PrefectFuture"
        runs = task_runs_by_name(engine)
        look_run = next(r for name, r in runs.items() if name.startswith("look"))
        assert not look_run.task_inputs.get("payload")

    def test_unquoted_futures_are_still_resolved_and_tracked(
        self, engine: DirectEngineClient
    ) -> None:
        """The control: without ``quote`` the same dict's future is resolved and recorded."""

        @task
        def one() -> int:
            return 1

        @task
        def look(payload: Any) -> Any:
            return payload["f"]

        @flow
        def f() -> tuple[Any, str]:
            future = one.submit()
            return look({"f": future}), future.task_run_id

        value, upstream_id = f()
        assert value == 1
        look_run = next(r for n, r in task_runs_by_name(engine).items() if n.startswith("look"))
        assert look_run.task_inputs == {"payload": [upstream_id]}

    def test_quote_api(self) -> None:
        """``quote(x).unquote()`` and ``.unwrap()`` give ``x`` (Prefect's BaseAnnotation)."""
        marker = object()
        assert quote(marker).unquote() is marker
        assert quote(marker).unwrap() is marker

    def test_the_annotations_module_holds_the_engine_classes(self) -> None:
        """``from prefect.utilities.annotations import allow_failure, unmapped`` and the
        top-level names are the same classes (the engine recognises either import)."""
        import sdk

        assert allow_failure is sdk.allow_failure
        assert unmapped is sdk.unmapped


class TestOpaque:
    def test_an_opaque_future_is_resolved_and_tracked_but_its_result_not_walked(
        self, engine: DirectEngineClient
    ) -> None:
        """annotations.py ``opaque``: "resolve the top-level value, but do not traverse into
        its contents" - a future inside the result stays a future; the wrapped future is
        an upstream (concepts/tasks.mdx, the ``opaque(future)`` example)."""

        @task
        def one() -> int:
            return 1

        @task
        def build(inner: Any) -> dict[str, Any]:
            return {"inner": inner}

        @task
        def look(payload: dict[str, Any]) -> str:
            return type(payload["inner"]).__name__

        @flow
        def f() -> tuple[str, str]:
            inner = one.submit()
            inner.wait()
            built = build.submit(quote(inner))  # a result holding a future
            return look.submit(opaque(built)).result(), built.task_run_id

        kind, built_id = f()
        assert kind == "PrefectFuture"
        look_run = next(r for n, r in task_runs_by_name(engine).items() if n.startswith("look"))
        assert look_run.task_inputs == {"payload": [built_id]}


class TestTaskInputHash:
    def test_same_inputs_hit_the_cache_and_other_inputs_do_not(
        self, engine: DirectEngineClient
    ) -> None:
        """Prefect's docs (concepts/caching.mdx, "cache_key_fn"): ``cache_key_fn=task_input_hash``
        caches on the task's inputs."""
        calls: list[int] = []

        @task(cache_key_fn=task_input_hash)
        def square(x: int) -> int:
            calls.append(x)
            return x * x

        @flow
        def f() -> list[Any]:
            return [square(2, return_state=True), square(2, return_state=True), square(3)]

        first, second, third = f()
        assert calls == [2, 3]
        assert first.name == "Completed" and second.name == "Cached"
        assert second.result() == 4 and third == 9

    def test_the_key_covers_the_task_key_the_bytecode_and_the_arguments(self) -> None:
        """tasks.py: ``hash_objects(task.task_key, fn.__code__.co_code.hex(), arguments)``."""

        @task
        def a(x: int) -> int:
            return x

        @task
        def b(x: int) -> int:
            return x + 1

        class Ctx:
            def __init__(self, t: Any) -> None:
                self.task = t

        key = task_input_hash(Ctx(a), {"x": 1})
        assert key is not None and key == task_input_hash(Ctx(a), {"x": 1})
        assert key != task_input_hash(Ctx(a), {"x": 2})
        assert key != task_input_hash(Ctx(b), {"x": 1})

    def test_unhashable_inputs_give_no_key(self) -> None:
        """tasks.py: "If cloudpickle fails, this will return a null key"."""

        @task
        def a(x: Any) -> Any:
            return x

        class Ctx:
            task = a

        assert task_input_hash(Ctx(), {"x": threading.Lock()}) is None


class TestLogging:
    def test_disable_run_logger_gives_a_silent_logger_outside_runs(self) -> None:
        """loggers.py ``get_run_logger``: with both run loggers disabled, a disabled logger
        instead of ``MissingContextError`` (test-workflows.mdx, ``.fn()`` with logging)."""
        from sdk import get_run_logger
        from sdk.exceptions import MissingContextError

        with disable_run_logger():
            get_run_logger().info("dropped")
        with pytest.raises(MissingContextError):
            get_run_logger()

    def test_get_logger_names_a_logger_under_stratoflow(self) -> None:
        assert get_logger("my.module").name == "stratoflow.my.module"
        assert get_logger().name == "stratoflow"


class TestExceptions:
    def test_result_of_an_unfinished_run_raises_unfinished_run(self) -> None:
        """states.py ``get_state_result``: a non-final state raises ``UnfinishedRun``;
        here it is also a ``MissingResult`` (what Stratoflow raised before)."""
        with pytest.raises(UnfinishedRun, match="not finished"):
            Running().result()
        assert issubclass(UnfinishedRun, MissingResult)

    def test_calling_a_task_with_wrong_arguments_raises_parameter_bind_error(
        self, engine: DirectEngineClient
    ) -> None:
        """Prefect raises ``ParameterBindError`` (a ``TypeError``) when arguments do not bind."""

        @task
        def one(x: int) -> int:
            return x

        @flow
        def f() -> None:
            one(1, 2)  # type: ignore[call-arg]

        with pytest.raises(ParameterBindError, match="too many positional"):
            f()
        assert issubclass(ParameterBindError, TypeError)

    def test_map_errors_have_prefect_names(self, engine: DirectEngineClient) -> None:
        """tasks.py ``map``: ``MappingLengthMismatch`` / ``MappingMissingIterable``."""

        @task
        def add(x: int, y: int) -> int:
            return x + y

        @flow
        def lengths() -> Any:
            return add.map([1, 2], [1])

        @flow
        def none() -> Any:
            return add.map(1, 2)

        with pytest.raises(MappingLengthMismatch):
            lengths()
        with pytest.raises(MappingMissingIterable):
            none()

    def test_prefect_names_are_stratoflow_classes(self) -> None:
        """``PrefectException`` is the engine's base; the client's not-found and
        already-exists errors are the ones ``sdk.exceptions`` exports."""
        from runtime.errors import AlreadyExists, NotFound

        assert PrefectException is StratoflowException
        assert issubclass(ObjectNotFound, NotFound)
        assert ObjectAlreadyExists is AlreadyExists

    def test_client_raises_object_not_found(self, engine: DirectEngineClient) -> None:
        """``client.read_flow_run`` of an unknown id raises ``ObjectNotFound`` (Prefect's)."""
        from sdk import get_client

        with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
            client.read_flow_run("00000000-0000-0000-0000-000000000000")
