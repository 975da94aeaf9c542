"""Calling user functions: with a timeout (sync and async), and binding parameters."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import inspect
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from runtime.engine.exceptions import ParameterBindError

_SIGNATURES: weakref.WeakKeyDictionary[Callable[..., Any], inspect.Signature] = (
    weakref.WeakKeyDictionary()
)
_SIGNATURES_LOCK = threading.Lock()


def signature_of(fn: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature(fn)``, computed once per function (it is on every call's path).

    Cached by a weak reference to ``fn``: a function defined inside a flow (and what
    its closure holds: results, exceptions with their tracebacks and the engines in
    them) is released with the function, not kept for the life of the process.
    Callables that take no weak reference are not cached.
    """
    try:
        cached = _SIGNATURES.get(fn)
    except TypeError:  # not weakly referenceable
        return inspect.signature(fn)
    if cached is None:
        cached = inspect.signature(fn)
        with _SIGNATURES_LOCK:
            _SIGNATURES[fn] = cached
    return cached


def bind_parameters(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults applied (TypeError names the problem)."""
    signature = signature_of(fn)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ParameterBindError(f"{getattr(fn, '__name__', fn)}(): {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def call_with_parameters(fn: Callable[..., Any], parameters: dict[str, Any]) -> Any:
    """Call ``fn`` with parameters by name, re-spreading ``*args`` and ``**kwargs``."""
    signature = signature_of(fn)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, param in signature.parameters.items():
        if name not in parameters:
            continue
        value = parameters[name]
        if param.kind is param.VAR_POSITIONAL:
            args.extend(value)
        elif param.kind is param.VAR_KEYWORD:
            kwargs.update(value)
        elif param.kind is param.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[name] = value
    return fn(*args, **kwargs)


_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_exc_info(
    error: BaseException,
) -> tuple[type[BaseException], BaseException, TracebackType | None]:
    """``exc_info`` for logging ``error`` with the engine's own frames left out.

    Run logs show where the user's code failed, not the engine's call stack.
    """
    tb = error.__traceback__
    while tb is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == _ENGINE_DIR:
        tb = tb.tb_next
    return type(error), error, tb or error.__traceback__


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Ask ``thread`` to raise ``exc_type`` at its next bytecode (best effort)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
        )


class _Abandoned(BaseException):
    """Raised inside a timed-out call's thread to stop it; never seen by callers."""


def call_sync(fn: Callable[[], Any], timeout: float | None) -> Any:
    """Run ``fn()``; with a timeout, raise TimeoutError when it does not return in time.

    The call runs in a helper thread (carrying the caller's context variables)
    so the caller can stop waiting; the helper is then interrupted at its next
    Python bytecode. A call blocked inside C code finishes in the background
    and its result is discarded.
    """
    if timeout is None:
        return fn()
    outcome: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            outcome["value"] = ctx.run(fn)
        except _Abandoned:
            pass
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="stratoflow-timed-call", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        _raise_in_thread(thread, _Abandoned)
        raise TimeoutError(f"exceeded timeout of {timeout:g} second(s)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


async def call_async(fn: Callable[[], Awaitable[Any]], timeout: float | None) -> Any:
    """Await ``fn()``; with a timeout, cancel it and raise TimeoutError when late."""
    if timeout is None:
        return await fn()
    try:
        return await asyncio.wait_for(fn(), timeout)
    except TimeoutError:
        raise TimeoutError(f"exceeded timeout of {timeout:g} second(s)") from None
