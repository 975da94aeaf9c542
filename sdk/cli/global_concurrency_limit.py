"""``stratoflow global-concurrency-limit`` (alias ``gcl``): Prefect's ``prefect gcl`` commands.

create, ls, inspect, update, enable, disable and delete global concurrency limits
(``concurrency()`` and ``rate_limit()`` take their slots). Options follow
``prefect gcl`` (src/prefect/cli/global_concurrency_limit.py): ``--limit/-l``,
``--slot-decay-per-second``, ``--disable``/``--enable``, ``--output/-o json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdk.cli._client import ApiUrl, api_command, connect
from sdk.cli._output import (
    fail,
    print_fields,
    print_json,
    print_table,
    say,
    to_jsonable,
    usage_error,
)

if TYPE_CHECKING:
    from runtime.models import ConcurrencyLimit
    from sdk.client import SyncClient

app = typer.Typer(
    help="Manage global concurrency limits: create, ls, inspect, update, enable, disable, delete.",
    no_args_is_help=True,
)

Output = Annotated[
    str | None,
    typer.Option("--output", "-o", help="Specify an output format. Currently supports: json"),
]


def _client(api_url: str | None) -> SyncClient:
    from sdk.client import ApiSyncClient

    return ApiSyncClient(connect(api_url))


def _json_output(output: str | None) -> bool:
    if output is None:
        return False
    if output.lower() != "json":
        usage_error("Only 'json' output format is supported.")
    return True


def _read(client: SyncClient, name: str) -> ConcurrencyLimit:
    from sdk.client import ObjectNotFound

    try:
        return client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        fail(f"Global concurrency limit {name!r} not found.")


def limit_fields(limit: ConcurrencyLimit) -> list[tuple[str, Any]]:
    return [
        ("id", limit.id),
        ("name", limit.name),
        ("active", limit.active),
        ("limit", limit.limit),
        ("active slots", limit.active_slots),
        ("slot decay per second", limit.slot_decay_per_second),
        ("created", limit.created),
        ("updated", limit.updated),
    ]


@app.command("create")
@api_command
def create(
    name: Annotated[str, typer.Argument(help="The limit's name (what concurrency() names).")],
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=0, help="The limit of the global concurrency limit.")
    ],
    disable: Annotated[
        bool, typer.Option("--disable", help="Create an inactive global concurrency limit.")
    ] = False,
    active_slots: Annotated[
        int,
        typer.Option("--active-slots", min=0, max=0, help="Only 0: slots are held by leases."),
    ] = 0,
    slot_decay_per_second: Annotated[
        float,
        typer.Option("--slot-decay-per-second", min=0.0, help="The slot decay per second."),
    ] = 0.0,
    api_url: ApiUrl = None,
) -> None:
    """Create a global concurrency limit."""
    from pydantic import ValidationError

    from sdk.client import ObjectAlreadyExists
    from sdk.client.schemas.actions import GlobalConcurrencyLimitCreate

    try:
        request = GlobalConcurrencyLimitCreate(
            name=name,
            limit=limit,
            active=not disable,
            active_slots=active_slots,
            slot_decay_per_second=slot_decay_per_second,
        )
    except ValidationError as exc:
        usage_error(f"Invalid arguments provided: {_first_error(exc)}")
    try:
        limit_id = _client(api_url).create_global_concurrency_limit(request)
    except ObjectAlreadyExists:
        fail(
            f"Global concurrency limit {name!r} already exists. "
            "Please try creating with a different name."
        )
    say(
        f"Created global concurrency limit with name {name!r} and ID '{limit_id}'. "
        f"Run `stratoflow gcl inspect {name}` to view details."
    )


@app.command("ls")
@api_command
def ls(output: Output = None, api_url: ApiUrl = None) -> None:
    """List all global concurrency limits."""
    as_json = _json_output(output)
    limits = _client(api_url).read_global_concurrency_limits(limit=None)
    if as_json:
        print_json(limits)
        return
    if not limits:
        say("No global concurrency limits found.")
        return
    print_table(
        "Global Concurrency Limits",
        ["ID", "NAME", "ACTIVE", "LIMIT", "ACTIVE SLOTS", "SLOT DECAY PER SECOND", "UPDATED"],
        (
            [
                lim.id,
                lim.name,
                lim.active,
                lim.limit,
                lim.active_slots,
                lim.slot_decay_per_second,
                lim.updated,
            ]
            for lim in limits
        ),
    )


@app.command("inspect")
@api_command
def inspect(
    name: Annotated[str, typer.Argument(help="The limit's name.")],
    output: Output = None,
    file_path: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Write the JSON output to this .json file."),
    ] = None,
    api_url: ApiUrl = None,
) -> None:
    """Inspect a global concurrency limit."""
    as_json = _json_output(output)
    if file_path is not None and not as_json:
        usage_error("The --file/-f option requires the --output option to be set.")
    limit = _read(_client(api_url), name)
    if file_path is not None:
        file_path.write_text(json.dumps(to_jsonable(limit), indent=2, ensure_ascii=True) + "\n")
        say(f"Global concurrency limit {name!r} written to {file_path}")
    elif as_json:
        print_json(limit)
    else:
        print_fields(f"Global concurrency limit {name!r}", limit_fields(limit))


@app.command("update")
@api_command
def update(
    name: Annotated[str, typer.Argument(help="The limit's name.")],
    enable: Annotated[
        bool, typer.Option("--enable", help="Enable the global concurrency limit.")
    ] = False,
    disable: Annotated[
        bool, typer.Option("--disable", help="Disable the global concurrency limit.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-l", min=0, help="The limit of the global concurrency limit."),
    ] = None,
    slot_decay_per_second: Annotated[
        float | None,
        typer.Option("--slot-decay-per-second", min=0.0, help="The slot decay per second."),
    ] = None,
    api_url: ApiUrl = None,
) -> None:
    """Update a global concurrency limit (only the options given change)."""
    from sdk.client import ObjectNotFound
    from sdk.client.schemas.actions import GlobalConcurrencyLimitUpdate

    if enable and disable:
        usage_error("Cannot enable and disable a global concurrency limit at the same time.")
    change = GlobalConcurrencyLimitUpdate(
        limit=limit,
        active=True if enable else (False if disable else None),
        slot_decay_per_second=slot_decay_per_second,
    )
    if not change.model_dump(exclude_none=True):
        usage_error("No update arguments provided.")
    try:
        _client(api_url).update_global_concurrency_limit(name, change)
    except ObjectNotFound:
        fail(f"Global concurrency limit {name!r} not found.")
    say(f"Updated global concurrency limit with name {name!r}.")


def _set_active(name: str, active: bool, api_url: str | None) -> None:
    from sdk.client.schemas.actions import GlobalConcurrencyLimitUpdate

    client = _client(api_url)
    word = "enabled" if active else "disabled"
    if _read(client, name).active is active:
        fail(f"Global concurrency limit with name {name!r} is already {word}.")
    client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=active))
    say(f"{word.capitalize()} global concurrency limit with name {name!r}.")


@app.command("enable")
@api_command
def enable(
    name: Annotated[str, typer.Argument(help="The limit's name.")], api_url: ApiUrl = None
) -> None:
    """Enable a global concurrency limit."""
    _set_active(name, True, api_url)


@app.command("disable")
@api_command
def disable(
    name: Annotated[str, typer.Argument(help="The limit's name.")], api_url: ApiUrl = None
) -> None:
    """Disable a global concurrency limit."""
    _set_active(name, False, api_url)


@app.command("delete")
@api_command
def delete(
    name: Annotated[str, typer.Argument(help="The limit's name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    api_url: ApiUrl = None,
) -> None:
    """Delete a global concurrency limit (asks first when run in a terminal)."""
    from sdk.client import ObjectNotFound

    client = _client(api_url)
    limit = _read(client, name)
    if not yes and sys.stdin.isatty():
        question = f"Are you sure you want to delete global concurrency limit {limit.name!r}?"
        if not typer.confirm(question, default=False):
            fail("Deletion aborted.")
    try:
        client.delete_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        fail(f"Global concurrency limit {name!r} not found.")
    say(f"Deleted global concurrency limit with name {name!r}.")


def _first_error(exc: Any) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
