"""``stratoflow concurrency-limit``: limits on task runs by tag (the limit named ``tag:<TAG>``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdk.cli._client import ApiUrl, Json, api_command, connect
from sdk.cli._output import print_fields, print_json, print_table, say

if TYPE_CHECKING:
    from runtime.models import ConcurrencyLimit

app = typer.Typer(
    help="Concurrency limits on task runs by tag: create, ls, inspect, delete.",
    no_args_is_help=True,
)

TAG_PREFIX = "tag:"


def limit_name(tag: str) -> str:
    """The limit governing tasks tagged ``tag`` (the engine's naming)."""
    from runtime.engine.client import tag_limit_name

    return tag_limit_name(tag)


def tag_of(limit: ConcurrencyLimit) -> str:
    """The tag of a task-tag limit, else the limit's full name."""
    return limit.name.removeprefix(TAG_PREFIX) if limit.name.startswith(TAG_PREFIX) else limit.name


def limit_fields(limit: ConcurrencyLimit) -> list[tuple[str, Any]]:
    return [
        ("tag", tag_of(limit)),
        ("name", limit.name),
        ("limit", limit.limit),
        ("active slots", limit.active_slots),
        ("available", limit.available),
        ("slot decay per second", limit.slot_decay_per_second or None),
        ("created", limit.created),
        ("updated", limit.updated),
    ]


@app.command("create")
@api_command
def create(
    tag: Annotated[str, typer.Argument(help="Task runs with this tag share the limit.")],
    limit: Annotated[int, typer.Argument(min=0, help="How many may run at once (0 blocks them).")],
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Limit how many task runs tagged TAG run at once (resizes an existing one, as Prefect)."""
    from runtime.models import ConcurrencyLimitCreate
    from sdk.client import upsert_limit

    client = connect(api_url)
    created = upsert_limit(
        client.create_concurrency_limit,
        client.update_concurrency_limit,
        ConcurrencyLimitCreate(name=limit_name(tag), limit=limit),
    )
    if json_output:
        print_json(created)
        return
    say(f"Set concurrency limit {created.limit} for tag {tag!r} ({created.name}).")


@app.command("ls")
@api_command
def ls(
    all_limits: Annotated[
        bool,
        typer.Option("--all", help="Also list work-pool, deployment and global limits."),
    ] = False,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """List task-tag concurrency limits with their active slots."""
    limits = connect(api_url).read_all_concurrency_limits()
    if not all_limits:
        limits = [lim for lim in limits if lim.name.startswith(TAG_PREFIX)]
    if json_output:
        print_json(limits)
        return
    print_table(
        "Concurrency limits",
        ["TAG", "NAME", "LIMIT", "ACTIVE", "AVAILABLE", "CREATED"],
        (
            [tag_of(lim), lim.name, lim.limit, lim.active_slots, lim.available, lim.created]
            for lim in limits
        ),
    )


@app.command("inspect")
@api_command
def inspect(
    tag: Annotated[str, typer.Argument(help="The tag.")],
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Show the limit on task runs tagged TAG."""
    limit = connect(api_url).read_concurrency_limit(limit_name(tag))
    if json_output:
        print_json(limit)
        return
    print_fields(f"Concurrency limit for tag {tag!r}", limit_fields(limit))


@app.command("delete")
@api_command
def delete(
    tag: Annotated[str, typer.Argument(help="The tag.")],
    api_url: ApiUrl = None,
) -> None:
    """Remove the limit on task runs tagged TAG (their held slots go with it)."""
    connect(api_url).delete_concurrency_limit(limit_name(tag))
    say(f"Deleted the concurrency limit for tag {tag!r}.")
