"""Flow run inputs (Prefect's ``flow_run_input``): small JSON values keyed per flow run.

A paused or suspended flow run stores the JSON schema of the input it waits for
(``paused-<pause key>-schema``), and ``resume_flow_run`` stores the validated
response (``paused-<pause key>-response``). They live in the runs table as items
of their own, ``id`` = ``<flow run id>#input#<key>`` (no run has such an id, and the
items carry none of the runs' index attributes, so no listing sees them), with
``value`` (the JSON text), ``created`` and ``expires_at`` (DynamoDB TTL: the
installation's retention, counted from the write). Data access only.
"""

from __future__ import annotations

from datetime import timedelta

from runtime.errors import AlreadyExists, InvalidInput
from runtime.limits import DOC_MAX_BYTES
from runtime.resources import TableSpec
from runtime.states import utcnow
from runtime.stores.dynamo import ConditionFailed, Dynamo, epoch, iso

INPUT_KEY_MAX = 200
"""Longest input key (Prefect's keys are ``<state name>-<pause key>-<part>``)."""

INPUT_VALUE_MAX_BYTES = DOC_MAX_BYTES
"""Largest stored value (JSON text): an item holds 400 KB."""


def input_item_id(flow_run_id: str, key: str) -> str:
    """The runs-table ``id`` of one input of one flow run."""
    return f"{flow_run_id}#input#{key}"


class RunInputStore:
    """Create, read and delete flow run inputs (values are JSON text)."""

    def __init__(self, db: Dynamo, table: TableSpec, *, retention_days: int = 30) -> None:
        self.db = db
        self.table = table
        self.retention_days = retention_days

    @staticmethod
    def _check(key: str, value: str | None = None) -> None:
        if not key or len(key) > INPUT_KEY_MAX or "#" in key:
            raise InvalidInput(
                f"key: an input key has 1 to {INPUT_KEY_MAX} characters and no '#'", field="key"
            )
        if value is not None and len(value.encode()) > INPUT_VALUE_MAX_BYTES:
            raise InvalidInput(
                f"value: more than the {INPUT_VALUE_MAX_BYTES} bytes an input may hold",
                field="value",
            )

    def create(self, flow_run_id: str, key: str, value: str, *, sender: str | None = None) -> bool:
        """Store ``value`` under ``key``; True if written, False if the same value was there.

        A conditional put: a different value already stored is AlreadyExists (as
        Prefect's 409), so two writers never overwrite each other; the same value
        again (a retried request) changes nothing.
        """
        self._check(key, value)
        now = utcnow()
        item = {
            "id": input_item_id(flow_run_id, key),
            "flow_run_id": flow_run_id,
            "input_key": key,
            "value": value,
            "created": iso(now),
            "expires_at": epoch(now + timedelta(days=self.retention_days)),
        }
        if sender is not None:
            item["sender"] = sender
        try:
            self.db.put(self.table.name, item, condition="attribute_not_exists(id)")
        except ConditionFailed:
            current = self.read(flow_run_id, key)
            if current == value:
                return False
            raise AlreadyExists(
                f"flow run {flow_run_id} already has an input {key!r}",
                id=flow_run_id,
                key=key,
            ) from None
        return True

    def read(self, flow_run_id: str, key: str) -> str | None:
        """The JSON text stored under ``key``, or None."""
        self._check(key)
        item = self.db.get(self.table.name, {"id": input_item_id(flow_run_id, key)})
        return None if item is None else str(item["value"])

    def delete(self, flow_run_id: str, key: str) -> None:
        """Remove the input ``key`` (nothing happens when there is none)."""
        self._check(key)
        self.db.delete(self.table.name, {"id": input_item_id(flow_run_id, key)})
