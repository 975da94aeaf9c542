"""The API address of a run, for ``sdk.runtime``'s ``api_url`` attributes."""

from __future__ import annotations


def run_api_url(collection: str, run_id: str | None) -> str | None:
    """``{STRATOFLOW_API_URL}/{collection}/{id}``; None without an API (embedded or AWS)."""
    from runtime.settings import get_settings

    base = get_settings().api_url
    if not base or run_id is None:
        return None
    return f"{base.rstrip('/')}/{collection}/{run_id}"
