"""Contract: schemathesis drives the committed OpenAPI document against the local gateway.

Every operation gets a bounded number of generated requests (valid and invalid);
none may produce a 5xx, and every documented response must match its schema.
The totals are printed (run with ``-s``) and asserted non-zero, so the test can
never pass by running nothing.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(str(ROOT / "docs" / "openapi.json"))
EXAMPLES_PER_OPERATION = 10

tried: collections.Counter[str] = collections.Counter()


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_responses_match_the_schema(case: schemathesis.Case, api: str) -> None:
    tried[case.operation.label] += 1
    case.call_and_validate(base_url=api, checks=[not_a_server_error, response_schema_conformance])


@pytest.fixture(scope="module", autouse=True)
def _report() -> object:
    yield
    print(f"\nschemathesis: {sum(tried.values())} requests over {len(tried)} operations")
