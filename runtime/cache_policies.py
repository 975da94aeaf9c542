"""Cache policies, as in Prefect 3: how a task run's cache key is computed.

A policy turns a task call into a cache key (a string) or None (do not cache).
The built-in instances mirror ``prefect.cache_policies``:

``INPUTS``            a hash of the task's arguments (``INPUTS - "x"`` ignores ``x``)
``TASK_SOURCE``       a hash of the task function's source code
``FLOW_PARAMETERS``   a hash of the parameters of the flow run
``RUN_ID``            the flow run id (the task run id when there is no flow run)
``NO_CACHE``          never cache
``DEFAULT``           ``INPUTS + TASK_SOURCE + RUN_ID``

Policies combine with ``+`` into a :class:`CompoundCachePolicy`, whose key is
a hash of its components' keys. ``cache_key_fn(context, parameters)`` becomes a
:class:`CacheKeyFnPolicy`.

Where Stratoflow differs from Prefect, on purpose (a frequent Prefect
complaint: two unrelated tasks called with ``x=1`` under ``INPUTS`` share one
entry, installation-wide): the keys of the built-in policies (``INPUTS``,
``TASK_SOURCE``, ``FLOW_PARAMETERS``, ``RUN_ID``, ``DEFAULT`` and every
combination) include the task's key (``Task.task_key``: its name and a
fingerprint of its source), so two different tasks never share an entry. A
key chosen by you -- a ``cache_key_fn``, or your own ``CachePolicy``
subclass -- is used as it is: that is how tasks share entries on purpose.

Also on purpose (Prefect issue #15861: a
failing key component still produced a shared cache entry): any exception while
computing a key -- an unhashable argument, a raising ``cache_key_fn``, a bug in
a custom policy, a key that is not a string -- raises :class:`CacheKeyError`
with the cause chained. A key is never silently computed from the parts that
worked. Also, ``INPUTS`` and ``FLOW_PARAMETERS`` of a call without arguments
(parameters) give a key (the hash of ``{}``) instead of None, so a
zero-argument task with ``cache_policy=INPUTS`` is cached as users expect.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

import cloudpickle
from pydantic_core import to_json

from runtime.errors import StratoflowError

__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NO_CACHE",
    "RUN_ID",
    "TASK_SOURCE",
    "CacheKeyContext",
    "CacheKeyError",
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "FlowParameters",
    "Inputs",
    "RunId",
    "TaskSource",
    "hash_objects",
    "task_scoped_hash",
    "task_source_hash",
]


class CacheKeyError(StratoflowError, ValueError):
    """A cache key could not be computed; the task run fails instead of sharing a wrong entry."""

    status_code = 422
    error_type = "cache_key_error"


@dataclass
class CacheKeyContext:
    """What a cache policy (or a ``cache_key_fn``) knows about the task call.

    Plays the role of Prefect's ``TaskRunContext`` for ``cache_key_fn(context,
    parameters)``. ``task_source`` is the task's source text (or any stable
    fingerprint of it); when empty, ``TASK_SOURCE`` falls back to hashing
    ``task_fn``.
    """

    task_key: str
    task_source: str = ""
    task_fn: Callable[..., Any] | None = None
    flow_run_id: str | None = None
    task_run_id: str | None = None
    flow_parameters: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------- hashing


def _canonical(obj: Any) -> Any:
    """Sets become sorted lists so that their (hash-seeded) iteration order never matters.

    Iterators are refused (to_json would consume them, and the task would get
    them empty); hash_objects then tries cloudpickle, which copies them or fails.
    """
    if isinstance(obj, Iterator):
        raise TypeError(f"a {type(obj).__qualname__} would be consumed by hashing it")
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    if isinstance(obj, set | frozenset):
        items = [_canonical(v) for v in obj]
        return sorted(items, key=lambda v: to_json(v))
    return obj


def _describe(obj: Any) -> str:
    return type(obj).__qualname__


def hash_objects(*objs: Any) -> str:
    """A stable sha256 hex digest of ``objs``.

    First choice: JSON via ``pydantic_core.to_json`` (models, dataclasses,
    datetimes, UUIDs...), sets sorted and object keys sorted, so the digest is
    the same in every process. Fallback for values JSON cannot express:
    cloudpickle (stable for the same value and library versions). When both
    fail, raises :class:`CacheKeyError` naming the offending value's type.
    """
    try:
        text = json.dumps(
            json.loads(to_json(_canonical(list(objs)))),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(b"json:" + text.encode("utf-8")).hexdigest()
    except Exception as json_exc:
        try:
            data = cloudpickle.dumps(objs)
        except Exception as pickle_exc:
            types = ", ".join(_describe(o) for o in objs)
            raise CacheKeyError(
                f"cannot hash a value of type {types} for a cache key: JSON failed "
                f"({json_exc}) and cloudpickle failed ({pickle_exc!r})"
            ) from pickle_exc
        return hashlib.sha256(b"pickle:" + data).hexdigest()


def task_scoped_hash(task_ctx: CacheKeyContext, policy: str, *objs: Any) -> str:
    """``hash_objects`` of ``objs`` scoped to the task: what a built-in policy returns.

    Includes ``task_ctx.task_key`` and the policy's name, so that two tasks (or
    two policies) never produce the same key from the same values.
    """
    return hash_objects({"task": task_ctx.task_key, "policy": policy}, *objs)


def _code_bytes(code: CodeType) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, CodeType) else repr(const).encode())
    return b"\x00".join(parts)


def task_source_hash(fn: Callable[..., Any]) -> str:
    """A sha256 of a task function's source (``inspect.getsource``).

    Accepts a task object with an ``fn`` attribute, and unwraps decorators.
    For functions without source (defined in a REPL, ``exec``, a built
    notebook cell), hashes the code object's bytecode, names and constants.
    """
    target: Any = getattr(fn, "fn", fn)
    target = inspect.unwrap(target)
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if not isinstance(code, CodeType):
            raise CacheKeyError(
                f"cannot fingerprint {target!r}: it has neither source nor a code object"
            ) from None
        return hashlib.sha256(b"code:" + _code_bytes(code)).hexdigest()
    return hashlib.sha256(b"source:" + source.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- policies

ComputeKey = Callable[..., "str | None"]


def _guard(method: ComputeKey) -> ComputeKey:
    """Wrap a ``compute_key`` so that failures raise CacheKeyError and keys are strings."""
    if getattr(method, "__stratoflow_guarded__", False):
        return method

    @functools.wraps(method)
    def compute_key(
        self: CachePolicy,
        task_ctx: CacheKeyContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        try:
            key = method(self, task_ctx, inputs, flow_parameters, **kwargs)
        except CacheKeyError:
            raise
        except Exception as exc:
            raise CacheKeyError(
                f"cache policy {self!r} failed to compute a key for task "
                f"{getattr(task_ctx, 'task_key', '?')!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if key is not None and not isinstance(key, str):
            raise CacheKeyError(
                f"cache policy {self!r} returned a key of type {type(key).__qualname__}; "
                f"a cache key must be a str (or None to skip caching)"
            )
        return key

    compute_key.__stratoflow_guarded__ = True  # type: ignore[attr-defined]
    return compute_key


class CachePolicy:
    """Base class of cache policies: ``compute_key`` returns a key or None (do not cache).

    Subclasses override :meth:`compute_key`; every override is wrapped so that
    any exception it raises surfaces as :class:`CacheKeyError` (cause chained),
    and a non-string key is rejected.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "compute_key" in cls.__dict__:
            cls.compute_key = _guard(cls.__dict__["compute_key"])  # type: ignore[method-assign]

    @classmethod
    def from_cache_key_fn(
        cls, cache_key_fn: Callable[[CacheKeyContext, dict[str, Any]], str | None]
    ) -> CacheKeyFnPolicy:
        """The policy of a Prefect-style ``cache_key_fn(context, parameters)``."""
        return CacheKeyFnPolicy(cache_key_fn)

    def compute_key(
        self,
        task_ctx: CacheKeyContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The cache key of this task call, or None when it must not be cached."""
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, _NoCache):
            return self
        return CompoundCachePolicy([self, other])

    def __sub__(self, other: str) -> CachePolicy:
        """Ignore the input ``other``; a no-op for policies that do not hash inputs."""
        if not isinstance(other, str):
            raise TypeError("only parameter names (str) can be subtracted from a cache policy")
        return self


@dataclass
class CompoundCachePolicy(CachePolicy):
    """Several policies at once: the key is a hash of every component's key.

    None when every component returns None. Nested compounds are flattened and
    Inputs policies merged into one (their exclusions combined), as in Prefect.
    """

    policies: list[CachePolicy] = field(default_factory=list)

    def __post_init__(self) -> None:
        flat: list[CachePolicy] = []
        for policy in self.policies:
            flat.extend(policy.policies if isinstance(policy, CompoundCachePolicy) else [policy])
        flat = [p for p in flat if not isinstance(p, _NoCache)]
        inputs = [p for p in flat if isinstance(p, Inputs)]
        if len(inputs) > 1:
            excludes = sorted({name for p in inputs for name in p.exclude})
            position = flat.index(inputs[0])
            flat = [p for p in flat if not isinstance(p, Inputs)]
            flat.insert(position, Inputs(exclude=excludes))
        self.policies = flat

    def compute_key(
        self,
        task_ctx: CacheKeyContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the component keys (None only when all are None); any failure raises."""
        keys = [
            [type(p).__name__, p.compute_key(task_ctx, inputs, flow_parameters, **kwargs)]
            for p in self.policies
        ]
        if all(k is None for _, k in keys):
            return None
        return hash_objects(*keys)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        return CompoundCachePolicy([*self.policies, other])

    def __sub__(self, other: str) -> CachePolicy:
        """Ignore input ``other`` in every Inputs component (no-op without one)."""
        if not isinstance(other, str):
            raise TypeError("only parameter names (str) can be subtracted from a cache policy")
        if not any(isinstance(p, Inputs) for p in self.policies):
            return self
        return CompoundCachePolicy(
            [p - other if isinstance(p, Inputs) else p for p in self.policies]
        )


@dataclass
class _NoCache(CachePolicy):
    """Never cache: ``compute_key`` is always None. Adding it to a policy changes nothing."""

    def compute_key(
        self,
        task_ctx: CacheKeyContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """None: this task call is not cached."""
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        return other


@dataclass
class Inputs(CachePolicy):
    """A hash of the task's key and arguments, minus the names in ``exclude``.

    The task's key is part of it (unlike Prefect): two different tasks called
    with the same arguments do not share an entry. Use a ``cache_key_fn`` to
    share on purpose.
    """

    exclude: list[str] = field(default_factory=list)

    def compute_key(
        self,
        task_ctx: CacheKeyContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the task key and included arguments; CacheKeyError names an unhashable one."""
        included = {k: v for k, v in (inputs or {}).items() if k not in self.exclude}
        try:
            return task_scoped_hash(task_ctx, "inputs", included)
        except CacheKeyError:
            for name, value in included.items():
                try:
                    hash_objects(value)
                except CacheKeyError as inner:
                    raise CacheKeyError(
                        f"cannot hash input {name!r} (a {type(value).__qualname__}) for the "
                        f"cache key of task {task_ctx.task_key!r}: exclude it with "
                        f'INPUTS - "{name}", or give the task a cache_key_fn',
                        parameter=name,
                    ) from inner
            raise

    def __sub__(self, other: str) -> CachePolicy:
        """The same policy, also ignoring the argument named ``other``."""
        if not isinstance(other, str):
            raise TypeError("only parameter names (str) can be subtracted from a cache policy")
        return Inputs(exclude=[*self.exclude, other] if other not in self.exclude else self.exclude)


@dataclass
class TaskSource(CachePolicy):
    """A hash of the task's key and source code: editing the task invalidates its cache."""

    def compute_key(
        self,
        task_ctx: CacheKeyContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the task key and ``task_source`` (or ``task_fn``); None without either."""
        if task_ctx.task_source:
            return task_scoped_hash(task_ctx, "task_source", task_ctx.task_source)
        if task_ctx.task_fn is not None:
            return task_scoped_hash(task_ctx, "task_source", task_source_hash(task_ctx.task_fn))
        return None


@dataclass
class FlowParameters(CachePolicy):
    """A hash of the task's key and the flow run's parameters."""

    def compute_key(
        self,
        task_ctx: CacheKeyContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the task key and ``flow_parameters``."""
        return task_scoped_hash(task_ctx, "flow_parameters", flow_parameters or {})


@dataclass
class RunId(CachePolicy):
    """The flow run id: the cache holds within one flow run only (Prefect's RUN_ID).

    Hashed with the task's key, so two tasks of one flow run do not share. A
    task run without a flow run uses its own id, so it never shares.
    """

    def compute_key(
        self,
        task_ctx: CacheKeyContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the task key and the flow run id (else the task run id); else None."""
        run_id = task_ctx.flow_run_id or task_ctx.task_run_id
        return task_scoped_hash(task_ctx, "run_id", str(run_id)) if run_id is not None else None


@dataclass
class CacheKeyFnPolicy(CachePolicy):
    """A Prefect-style ``cache_key_fn(context, parameters) -> str | None`` as a policy.

    Its key is used literally (not scoped to the task, unlike the built-in
    policies): tasks whose functions return the same key share the entry, on purpose.

    If the function raises, or returns something other than a str or None,
    ``compute_key`` raises :class:`CacheKeyError` (the task run fails loudly).
    """

    cache_key_fn: Callable[[CacheKeyContext, dict[str, Any]], str | None]

    def compute_key(
        self,
        task_ctx: CacheKeyContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """Whatever ``cache_key_fn(task_ctx, inputs)`` returns."""
        return self.cache_key_fn(task_ctx, inputs)

    def __repr__(self) -> str:
        fn = self.cache_key_fn
        return f"CacheKeyFnPolicy({getattr(fn, '__qualname__', repr(fn))})"


INPUTS = Inputs()
"""A hash of the task's key and arguments; ``INPUTS - "x"`` ignores argument ``x``."""

TASK_SOURCE = TaskSource()
"""A hash of the task's key and function source."""

FLOW_PARAMETERS = FlowParameters()
"""A hash of the task's key and the flow run's parameters."""

RUN_ID = RunId()
"""A hash of the task's key and the flow run id."""

NO_CACHE = _NoCache()
"""Never cache."""

DEFAULT = INPUTS + TASK_SOURCE + RUN_ID
"""Prefect's default: the same task, arguments, source and flow run."""
