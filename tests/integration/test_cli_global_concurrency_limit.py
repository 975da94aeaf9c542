"""``stratoflow global-concurrency-limit`` (alias ``gcl``) through the real entry point.

Expectations from Prefect's ``prefect gcl`` (src/prefect/cli/global_concurrency_limit.py
and docs/v3/how-to-guides/workflows/global-concurrency-limits.mdx, "Using the CLI"):
create with ``--limit``/``--slot-decay-per-second``/``--disable``, ``ls``, ``inspect``
(``--output json``), ``update`` (``--limit``, ``--enable``/``--disable``), ``delete``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from runtime.models import ConcurrencyLimitCreate
from sdk.http_client import StratoflowClient
from tests.integration.test_cli import Result, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(api: str) -> Any:
    def invoke(*args: str) -> Result:
        return run_cli(*args, api_url=api)

    return invoke


def test_gcl_lifecycle(cli: Any, api: str, tmp_path: Path) -> None:
    name = f"gcl-{uuid.uuid4().hex[:6]}"
    out = (
        cli(
            "global-concurrency-limit",
            "create",
            name,
            "--limit",
            "5",
            "--slot-decay-per-second",
            "1.0",
        )
        .ok()
        .out
    )
    assert f"Created global concurrency limit with name '{name}'" in out
    cli("gcl", "create", name, "--limit", "1").failed(1, "already exists")

    doc = cli("gcl", "inspect", name, "--output", "json").json()
    assert (doc["name"], doc["limit"], doc["active"], doc["slot_decay_per_second"]) == (
        name,
        5,
        True,
        1.0,
    )
    assert doc["active_slots"] == 0 and uuid.UUID(doc["id"])
    assert "slot decay per second" in cli("gcl", "inspect", name).ok().out
    target = tmp_path / "limit.json"
    cli("gcl", "inspect", name, "-o", "json", "--file", str(target)).ok()
    assert json.loads(target.read_text())["name"] == name

    assert "Updated" in cli("gcl", "update", name, "--limit", "10").ok().out
    cli("gcl", "update", name, "--disable").ok()
    doc = cli("gcl", "inspect", name, "-o", "json").json()
    assert (doc["limit"], doc["active"]) == (10, False)
    cli("gcl", "disable", name).failed(1, "already disabled")
    cli("gcl", "enable", name).ok()
    assert cli("gcl", "inspect", name, "-o", "json").json()["active"] is True
    cli("gcl", "update", name, "--slot-decay-per-second", "0").ok()
    assert cli("gcl", "inspect", name, "-o", "json").json()["slot_decay_per_second"] == 0.0

    cli("gcl", "create", f"{name}-off", "--limit", "2", "--disable").ok()
    listed = {lim["name"]: lim for lim in cli("gcl", "ls", "-o", "json").json()}
    assert listed[f"{name}-off"]["active"] is False and listed[name]["limit"] == 10
    assert name in cli("gcl", "ls").ok().out

    assert "Deleted global concurrency limit" in cli("gcl", "delete", name).ok().out
    cli("gcl", "inspect", name).failed(1, "not found")
    cli("gcl", "delete", name).failed(1, "not found")
    cli("gcl", "update", name, "--limit", "1").failed(1, "not found")


def test_gcl_bad_usage_changes_nothing(cli: Any, api: str) -> None:
    name = f"gcl-{uuid.uuid4().hex[:6]}"
    cli("gcl", "create", name, "--limit", "-1").failed(2)
    cli("gcl", "create", name).failed(2)
    cli("gcl", "create", "a/b", "--limit", "1").failed(2, "limit name")
    cli("gcl", "create", name, "--limit", "1", "--active-slots", "3").failed(2)
    cli("gcl", "ls", "-o", "yaml").failed(2, "json")
    with StratoflowClient(api) as client:
        assert name not in {lim.name for lim in client.read_all_concurrency_limits()}
        client.create_concurrency_limit(ConcurrencyLimitCreate(name=name, limit=1))
    cli("gcl", "update", name).failed(2, "No update arguments")
    cli("gcl", "update", name, "--enable", "--disable").failed(2, "same time")
    cli("gcl", "inspect", name, "--file", "x.json").failed(2, "--output")


def test_gcl_output_escapes_stored_text(cli: Any, api: str) -> None:
    """Names are printed through the escaping helpers (sdk/cli/_output.py)."""
    with StratoflowClient(api) as client:
        # a limit name holds no control character, but may hold rich markup: never parsed
        client.create_concurrency_limit(ConcurrencyLimitCreate(name="[bold]x[red]", limit=1))
    assert "[bold]x[red]" in cli("gcl", "ls").ok().out
    assert "[bold]x[red]" in cli("gcl", "inspect", "[bold]x[red]").ok().out
