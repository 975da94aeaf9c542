"""``sdk.testing``: helpers for testing flows (Prefect's ``prefect.testing``)."""
