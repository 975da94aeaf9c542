"""Prefect's ``prefect.client.schemas``: the request (``actions``), object and response models."""

from sdk.client.schemas import actions, objects, responses

__all__ = ["actions", "objects", "responses"]
