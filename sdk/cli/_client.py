"""The HTTP client the resource commands use, and the translation of its errors.

Every resource command takes ``--api-url`` (default ``STRATOFLOW_API_URL``) and
is wrapped by :func:`api_command`: an API error becomes ``Error: ...`` on stderr
and exit code 1, never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from sdk.cli._output import fail, usage_error

if TYPE_CHECKING:
    from sdk.http_client import StratoflowClient

P = ParamSpec("P")
R = TypeVar("R")

#: ``--api-url``, shared by every resource command.
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar="STRATOFLOW_API_URL",
        show_envvar=True,
        help="The Stratoflow API (printed by `stratoflow dev`).",
    ),
]

#: ``--json``, shared by every listing and inspect command.
Json = Annotated[
    bool, typer.Option("--json", help="Print plain JSON on stdout (and nothing else).")
]

#: Retries of the CLI's requests: fewer than the engine's, a person is waiting.
CLI_RETRIES = 2


def connect(api_url: str | None) -> StratoflowClient:
    """The client for ``api_url``; a usage error when no API is configured."""
    from sdk.http_client import StratoflowClient

    if not api_url:
        usage_error(
            "no API to talk to: set STRATOFLOW_API_URL (`stratoflow dev` prints it) "
            "or pass --api-url"
        )
    try:
        return StratoflowClient(api_url, retries=CLI_RETRIES)
    except ValueError as exc:
        usage_error(str(exc))


def describe(exc: Exception) -> str:
    """One line for an API error: the server's message, plus what it adds."""
    from sdk.api_errors import ApiConnectionError, TransitionRejected, ValidationError

    if isinstance(exc, ApiConnectionError):
        message = exc.message
        return message if message.startswith("cannot reach") else f"cannot reach the API: {message}"
    if isinstance(exc, TransitionRejected):
        state = exc.state
        current = f" (current state: {state.name})" if state is not None else ""
        return f"transition rejected: {exc.message}{current}"
    if isinstance(exc, ValidationError):
        return f"invalid request: {exc.message}"
    message = getattr(exc, "message", None) or str(exc)
    error_type = getattr(exc, "type", None)
    return f"{message} ({error_type})" if error_type else message


def api_command(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command: API errors are reported on stderr with exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from sdk.api_errors import ApiError

        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            fail(describe(exc))

    return wrapper


def paginate(fetch: Callable[[str | None], Any], limit: int | None = None) -> list[Any]:
    """Every item of a paged listing (``fetch(cursor) -> Page``), at most ``limit``."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        items.extend(page.items)
        if limit is not None and len(items) >= limit:
            return items[:limit]
        if not page.next_cursor:
            return items
        cursor = page.next_cursor
