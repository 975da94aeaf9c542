"""The API's OpenAPI document, generated from the routes.

    python -m handlers.openapi > docs/openapi.json

``tests/unit/test_openapi_drift.py`` fails when the committed document and the
routes disagree, so the contract in docs/ is always the one served.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document served at ``GET /openapi.json``."""
    from handlers.api import API_TITLE, API_VERSION, app

    document: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION)
    )
    return document


def main() -> int:
    """Print the document (sorted keys, two-space indent) on stdout."""
    json.dump(openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
