"""Workers that poll work pools, in the registry table (``stratoflow worker ls``).

One item per worker, ``pk`` = ``worker#<pool>#<name>``, ``item_type`` ``worker``,
``sort_value`` ``<pool>/<name>`` (listed through the registry's ``by_type`` index),
``doc`` the :class:`WorkerInfo` as JSON and ``ttl_at`` when it is forgotten. A
worker rewrites its item when it starts, after polls (at most every few seconds)
and when its runs change; a worker that stopped is deleted, one that died stops
being listed once its ``ttl_at`` passed (readers filter it: DynamoDB's TTL
deletes the item later, moto never does).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from runtime.resources import TableSpec
from runtime.states import utcnow
from runtime.stores.dynamo import Dynamo, epoch

WORKER = "worker"


class WorkerInfo(BaseModel):
    """What a polling worker says about itself."""

    name: str
    id: str = Field(description="The id its claims and heartbeats carry (name and a suffix)")
    work_pool_name: str
    host: str
    pid: int
    version: str
    limit: int | None = Field(default=None, description="Most runs at once (None: no limit)")
    started: datetime = Field(default_factory=utcnow)
    last_poll: datetime | None = None
    running: list[str] = Field(default_factory=list, description="Ids of the runs it executes")


class WorkerStore:
    """Registering, listing and forgetting workers (data access only)."""

    def __init__(self, db: Dynamo, table: TableSpec) -> None:
        self.db = db
        self.table = table

    @staticmethod
    def _key(pool: str, name: str) -> dict[str, str]:
        return {"pk": f"{WORKER}#{pool}#{name}"}

    def put(self, info: WorkerInfo, ttl_seconds: float, *, now: datetime | None = None) -> None:
        """Write the worker's item, listed until ``ttl_seconds`` from now unless written again."""
        expires = (now or utcnow()) + timedelta(seconds=ttl_seconds)
        self.db.put(
            self.table.name,
            {
                **self._key(info.work_pool_name, info.name),
                "item_type": WORKER,
                "sort_value": f"{info.work_pool_name}/{info.name}",
                "doc": info.model_dump_json(),
                "ttl_at": epoch(expires),
            },
        )

    def delete(self, pool: str, name: str) -> None:
        """Forget a worker (it stopped)."""
        self.db.delete(self.table.name, self._key(pool, name))

    def list(self, pool: str | None = None, *, now: datetime | None = None) -> list[WorkerInfo]:
        """Live workers (of ``pool``, or all) by pool and name; expired items are skipped."""
        condition = "item_type = :t"
        values: dict[str, object] = {":t": WORKER}
        if pool is not None:
            condition += " AND begins_with(sort_value, :p)"
            values[":p"] = f"{pool}/"
        keys = list(
            self.db.query(self.table.name, key_condition=condition, index="by_type", values=values)
        )
        moment = epoch(now or utcnow())
        found = []
        for key in keys:
            item = self.db.get(self.table.name, {"pk": key["pk"]})
            if item is None or int(item.get("ttl_at", 0)) < moment:
                continue
            found.append(WorkerInfo.model_validate_json(item["doc"]))
        return found
