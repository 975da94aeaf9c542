"""``@flow`` and :class:`Flow`: Prefect 3's flow decorator and its keywords."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import update_wrapper
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from pydantic import ConfigDict, ValidationError, create_model

from runtime.engine import options
from runtime.engine.calls import bind_parameters
from runtime.engine.exceptions import ParameterTypeError
from runtime.engine.flow_engine import run_flow, run_flow_async
from runtime.engine.methods import bound_copy, unwrap_method
from runtime.engine.parameter_schema import ParameterSchema, parameter_schema
from runtime.engine.task_runners import TaskRunner, ThreadPoolTaskRunner
from runtime.engine.tasks import SERIALIZERS
from runtime.models import RetryPolicy
from runtime.names import escape_unprintable
from runtime.states import State

P = ParamSpec("P")
R = TypeVar("R")

_extensions: dict[str, Callable[..., Any]] = {}


def register_flow_extension(name: str, implementation: Callable[..., Any]) -> None:
    """Install the code behind a Flow method that lives above the engine (``sdk``).

    ``deploy`` and ``from_source`` talk to the registry and pack code: ``sdk``
    registers them when it is imported (the engine never imports ``sdk``).
    """
    _extensions[name] = implementation


def _extension(name: str) -> Callable[..., Any]:
    implementation = _extensions.get(name)
    if implementation is None:
        raise RuntimeError(f"Flow.{name}() needs the sdk package: import sdk first")
    return implementation


def _task_runner(value: Any) -> TaskRunner:
    """The flow's task runner: an instance, a class to instantiate, or the default."""
    if value is None:
        return ThreadPoolTaskRunner()
    if isinstance(value, type) and issubclass(value, TaskRunner):
        return value()
    if isinstance(value, TaskRunner):
        return value
    raise TypeError(
        "Expected a task runner for 'task_runner' (for example "
        f"ThreadPoolTaskRunner(max_workers=4)); got {type(value).__name__} {value!r}"
    )


class Flow(Generic[P, R]):
    """A function whose calls become recorded, retried flow runs."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: float | None = None,
        task_runner: TaskRunner | None = None,
        description: str | None = None,
        timeout_seconds: float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        result_serializer: str | None = None,
        result_storage: Any = None,
        log_prints: bool | None = None,
        tags: list[str] | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_cancellation: list[Callable[..., Any]] | None = None,
        on_crashed: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
    ) -> None:
        fn, self.method_kind = unwrap_method(fn)
        if not callable(fn):
            raise TypeError("@flow must decorate a function")
        update_wrapper(self, fn)  # type: ignore[arg-type]
        self.fn = fn
        self.call_target: Callable[..., Any] = fn
        """What is called: ``fn``, or ``fn`` bound to an instance or class (``__get__``)."""
        self.bound_to: Any = None
        self.isasync = inspect.iscoroutinefunction(fn)
        self.name = name or fn.__name__.replace("_", "-")
        self.version = version
        options.check_name_template("flow_run_name", flow_run_name)
        self.flow_run_name = flow_run_name
        self.retries = options.check_count("retries", retries)
        delay = options.check_number("retry_delay_seconds", retry_delay_seconds)
        self.retry_delay_seconds: float = delay or 0.0
        self.task_runner = _task_runner(task_runner)
        self.description = description or inspect.getdoc(fn)
        options.check_number("timeout_seconds", timeout_seconds, positive=True)
        self.timeout_seconds = timeout_seconds
        options.check_bool("validate_parameters", validate_parameters)
        self.should_validate_parameters = validate_parameters
        options.check_bool("persist_result", persist_result)
        options.check_result_storage(result_storage)
        self.result_storage = result_storage
        # Prefect: a result_storage or result_serializer turns persistence on
        # (unless persist_result=False)
        self.persist_result = bool(persist_result) or (
            persist_result is None and (result_storage, result_serializer) != (None, None)
        )
        if result_serializer is not None and result_serializer not in SERIALIZERS:
            raise ValueError(
                f"result_serializer must be one of {SERIALIZERS}, not {result_serializer!r}"
            )
        self.result_serializer = result_serializer or "pickle"
        options.check_bool("log_prints", log_prints)
        self.log_prints = bool(log_prints)
        self.tags = sorted(set(tags or []))
        self.on_completion_hooks = options.check_hooks("on_completion", on_completion)
        self.on_failure_hooks = options.check_hooks("on_failure", on_failure)
        self.on_cancellation_hooks = options.check_hooks("on_cancellation", on_cancellation)
        self.on_crashed_hooks = options.check_hooks("on_crashed", on_crashed)
        self.on_running_hooks = options.check_hooks("on_running", on_running)
        self._options: dict[str, Any] = {
            "name": name,
            "version": version,
            "flow_run_name": flow_run_name,
            "retries": retries,
            "retry_delay_seconds": retry_delay_seconds,
            "task_runner": task_runner,
            "description": description,
            "timeout_seconds": timeout_seconds,
            "validate_parameters": validate_parameters,
            "persist_result": persist_result,
            "result_serializer": result_serializer,
            "result_storage": result_storage,
            "log_prints": log_prints,
            "tags": tags,
            "on_completion": on_completion,
            "on_failure": on_failure,
            "on_cancellation": on_cancellation,
            "on_crashed": on_crashed,
            "on_running": on_running,
        }
        self._model: Any = None
        self._schema: ParameterSchema | None = None

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some keywords changed."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"with_options() got unknown option(s): {', '.join(sorted(unknown))}")
        new: Flow[P, R] = Flow(self.fn, **{**self._options, **options})
        new.method_kind, new.call_target, new.bound_to = (
            self.method_kind,
            self.call_target,
            self.bound_to,
        )
        return new

    # ------------------------------------------------------------------ methods and hooks

    def __get__(self, instance: Any, owner: Any) -> Flow[P, R]:
        """On a class: bound to the instance (or the class for a classmethod), as in Prefect."""
        return bound_copy(self, instance, owner)

    @property
    def parameters(self) -> ParameterSchema:
        """The schema of the flow's parameters (Prefect's ``Flow.parameters``)."""
        if self._schema is None:
            self._schema = parameter_schema(self.fn)
        return self._schema

    def retry_policy(self) -> RetryPolicy:
        """The flow's ``retries`` and ``retry_delay_seconds`` as its runs' ``empirical_policy``."""
        return RetryPolicy(retries=self.retries, retry_delay_seconds=self.retry_delay_seconds)

    def _add_hook(self, kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook of ``kind`` (decorator form); ``with_options()`` copies keep it."""
        hooks: list[Callable[..., Any]] = getattr(self, f"{kind}_hooks")
        hooks.append(options.check_hook(kind, fn))
        self._options[kind] = list(hooks)
        return fn

    def on_completion(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(flow, flow_run, state)`` as a hook on Completed."""
        return self._add_hook("on_completion", fn)

    def on_failure(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(flow, flow_run, state)`` as a hook on Failed."""
        return self._add_hook("on_failure", fn)

    def on_cancellation(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(flow, flow_run, state)`` as a hook on Cancelled."""
        self.on_cancellation_hooks.append(options.check_hook("on_cancellation", fn))
        self._options["on_cancellation"] = list(
            self.on_cancellation_hooks
        )  # kept by with_options()
        return fn

    def on_crashed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(flow, flow_run, state)`` as a hook on Crashed."""
        return self._add_hook("on_crashed", fn)

    def on_running(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(flow, flow_run, state)`` as a hook on Running (each attempt)."""
        return self._add_hook("on_running", fn)

    # ------------------------------------------------------------------ parameters

    def _parameter_model(self) -> Any:
        if self._model is None:
            fields: dict[str, Any] = {}
            for name, param in inspect.signature(self.fn).parameters.items():
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    continue
                if name in ("self", "cls") and self.method_kind != "staticmethod":
                    continue  # bound, not a parameter (and shared by bound copies)
                annotation = Any if param.annotation is param.empty else param.annotation
                default = ... if param.default is param.empty else param.default
                fields[name] = (annotation, default)
            self._model = create_model(  # type: ignore[call-overload]
                f"{self.fn.__name__}_parameters",
                __config__=ConfigDict(arbitrary_types_allowed=True),
                **fields,
            )
        return self._model

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Check and coerce parameters against the signature's type hints.

        Raises :class:`ParameterTypeError` naming each bad parameter.
        """
        if not self.should_validate_parameters:
            return parameters
        model = self._parameter_model()
        checked = {k: v for k, v in parameters.items() if k in model.model_fields}
        try:
            validated = model.model_validate(checked)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ParameterTypeError(
                f"flow {self.name!r} received invalid parameters: {problems}"
            ) from None
        out = dict(parameters)
        out.update({name: getattr(validated, name) for name in checked})
        return out

    def render_run_name(self, parameters: dict[str, Any]) -> str | None:
        """``flow_run_name`` formatted with the parameters (None: a generated name)."""
        template = self.flow_run_name
        if template is None:
            return None
        if callable(template):
            return escape_unprintable(str(template()))
        try:
            return escape_unprintable(template.format(**parameters))
        except (KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"flow_run_name {template!r} cannot be formatted: {exc}") from None

    # ------------------------------------------------------------------ calling

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the flow now, recorded; returns its value (or final state with ``return_state``).

        An async flow returns a coroutine to await.
        """
        return_state = bool(kwargs.pop("return_state", False))
        wait_for = kwargs.pop("wait_for", None)
        parameters = self.validate_parameters(bind_parameters(self.call_target, args, kwargs))
        if self.isasync:
            return run_flow_async(self, parameters, wait_for=wait_for, return_state=return_state)
        return run_flow(self, parameters, wait_for=wait_for, return_state=return_state)

    # ------------------------------------------------------------------ serving

    def to_deployment(self, name: str, **options: Any) -> Any:
        """A deployment of this flow for ``sdk.serve(...)`` (``runtime/worker/serve.py``)."""
        from runtime.engine import remote

        return remote.method("to_deployment")(self, name, **options)

    def serve(self, name: str | None = None, **options: Any) -> None:
        """Register a deployment of this flow and execute its runs here until Ctrl-C/SIGTERM."""
        from runtime.engine import remote

        remote.method("serve")(self, name, **options)

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    # ------------------------------------------------------------------ deployments

    def deploy(self, name: str, work_pool_name: str | None = None, **options: Any) -> Any:
        """Create or update the deployment ``name`` of this flow; its id (a UUID).

        Prefect's ``Flow.deploy``: see :func:`sdk.deployments.deploy.deploy_flow`.
        """
        return _extension("deploy")(self, name, work_pool_name, **options)

    @classmethod
    def from_source(cls, source: Any, entrypoint: str) -> Flow[..., Any]:
        """The flow ``entrypoint`` names in ``source`` (a directory or a stored bundle).

        Prefect's ``Flow.from_source``: see :func:`sdk.deployments.deploy.flow_from_source`.
        """
        loaded: Flow[..., Any] = _extension("from_source")(source, entrypoint)
        return loaded


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...
@overload
def flow(__fn: None = None, **options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """Turn a function into a :class:`Flow` (bare ``@flow`` or ``@flow(name=..., ...)``)."""
    if __fn is not None:
        return Flow(__fn, **options)
    return lambda fn: Flow(fn, **options)
