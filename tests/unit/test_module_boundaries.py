"""What importing a layer pulls in: the HTTP client no boto3 and no stores; stores no wire schemas.

Each check runs in a fresh interpreter, so nothing this test process imported counts.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def imported_by(module: str, prefixes: tuple[str, ...]) -> list[str]:
    code = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return list(json.loads(out.stdout))


@pytest.mark.parametrize(
    "module",
    [
        "runtime.http",
        "runtime.http.client",
        "runtime.http.errors",
        "runtime.http.signing",
        "runtime.http.transport",
    ],
)
def test_the_http_client_imports_neither_boto3_nor_the_stores(module: str) -> None:
    assert imported_by(module, ("boto3", "botocore", "runtime.stores")) == []


def test_the_stores_import_no_wire_schemas() -> None:
    assert imported_by("runtime.stores", ("runtime.api_schemas", "handlers")) == []
