"""The committed docs/openapi.json is exactly what the routes generate."""

from __future__ import annotations

import json
from pathlib import Path

from handlers.openapi import openapi_document

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_matches_the_routes() -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == openapi_document(), (
        "docs/openapi.json is out of date: run "
        "`.venv/bin/python -m handlers.openapi > docs/openapi.json` and commit it"
    )


def test_every_route_of_the_contract_is_in_the_document() -> None:
    paths = openapi_document()["paths"]
    for path in (
        "/health",
        "/flow_runs",
        "/flow_runs/{id}/set_state",
        "/deployments",
        "/work_pools",
        "/concurrency_limits/leases",
        "/results",
        "/cache/{key}",
    ):
        assert path in paths, f"{path} is missing from the OpenAPI document"
