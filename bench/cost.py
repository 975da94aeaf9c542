"""Cost benchmark: DynamoDB units, requests and dollars per task run and per flow run.

    .venv/bin/python bench/cost.py [--tasks 200] [--flows 20]

Prints figures, asserts nothing. On the embedded backend (a moto server on
127.0.0.1 in a thread of this process) it runs

* a trivial flow run (a flow that returns None), ``--flows`` times, and
* a trivial flow calling a trivial task ``--tasks`` times,

and meters every AWS request the engine makes (botocore event hooks). Each
DynamoDB write is charged from the items themselves (read, uncounted, just
before and just after the write): the table for the larger of the two, every
index only when its entry changes, twice inside a transaction
(``runtime.stores.capacity``). Reads are charged for the full item (``GetItem``,
``BatchGetItem``) or the items returned (``Query``, ``Scan``, scaled up by
``ScannedCount`` when a filter dropped some). A task run costs the difference
between the flow with tasks and the trivial flow run, divided by the number of
tasks. Dollars at on-demand prices: $0.625 per million WRU, $0.125 per million
RRU, $5 per million S3 PUT.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.engine.backend import embedded_stores, use_engine_client
from runtime.engine.client import DirectEngineClient
from runtime.limits import item_size
from runtime.models import FlowRunFilter
from runtime.resources import TableSpec
from runtime.stores import Stores
from runtime.stores.capacity import (
    condition_check_units,
    dollars_per_million,
    item_write_cost,
    read_units,
    write_units,
)
from runtime.stores.dynamo import deserialize
from sdk import flow, task

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def inc(x: int) -> int:
    return x + 1


inc_task = task(inc)


@flow
def trivial_flow() -> None:
    return None


@flow
def flow_with_tasks(n: int) -> None:
    for i in range(n):
        inc_task(i)


@dataclass
class Totals:
    """What the metered requests cost so far."""

    requests: Counter[str] = field(default_factory=Counter)
    wru: float = 0.0
    rru: float = 0.0
    wru_by_target: Counter[str] = field(default_factory=Counter)

    def minus(self, other: Totals) -> Totals:
        return Totals(
            requests=self.requests - other.requests,
            wru=self.wru - other.wru,
            rru=self.rru - other.rru,
            wru_by_target=self.wru_by_target - other.wru_by_target,
        )

    def copy(self) -> Totals:
        return Totals(Counter(self.requests), self.wru, self.rru, Counter(self.wru_by_target))


class CapacityMeter:
    """Charges every DynamoDB request of one client, and counts S3 PUTs of another."""

    def __init__(self, stores: Stores) -> None:
        self.tables: dict[str, TableSpec] = {t.name: t for t in stores.specs.tables.values()}
        client = stores.db.client
        self.raw = stores.session.client("dynamodb", endpoint_url=client.meta.endpoint_url)
        self.totals = Totals()
        self._lock = threading.Lock()
        events = client.meta.events
        events.register("provide-client-params.dynamodb.*", self._before)
        events.register("after-call.dynamodb.*", self._after)
        stores.results.s3.meta.events.register("before-call.s3.*", self._s3)

    def snapshot(self) -> Totals:
        with self._lock:
            return self.totals.copy()

    # ------------------------------------------------------------------ hooks

    def _s3(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.totals.requests[f"s3.{model.name}"] += 1

    def _key(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.tables[table].key_names()}

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        found = self.raw.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return deserialize(found) if found else None

    def _targets(self, op: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(kind, table, wire key) of every item a write request touches."""
        if op in ("PutItem",):
            table = params["TableName"]
            return [("put", table, self._key(table, params["Item"]))]
        if op in ("UpdateItem", "DeleteItem"):
            return [(op, params["TableName"], params["Key"])]
        out = []
        if op == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        out.append(("put", table, self._key(table, request["PutRequest"]["Item"])))
                    else:
                        out.append(("delete", table, request["DeleteRequest"]["Key"]))
        if op == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((kind, body),) = entry.items()
                table = body["TableName"]
                key = body.get("Key") or self._key(table, body["Item"])
                out.append(("tx-" + kind, table, key))
        return out

    def _before(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        context["cost_params"] = params
        if model.name not in WRITES:
            return
        targets = self._targets(model.name, params)
        context["cost_before"] = [
            (t, table, key, self._get(table, key)) for t, table, key in targets
        ]

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        op = model.name
        params = context.get("cost_params")
        wru = 0.0
        rru = 0.0
        by_target: Counter[str] = Counter()
        failed = "Error" in parsed
        if op in WRITES:
            for kind, table, key, old in context.get("cost_before", []):
                spec = self.tables[table]
                if kind == "tx-ConditionCheck":
                    units = condition_check_units(old)
                    wru += units
                    by_target[f"{spec.logical_name} (condition check)"] += units
                    continue
                new = old if failed else self._get(table, key)
                if failed:  # a refused conditional write still costs the item's units
                    cost = item_write_cost(old, None, spec)
                    wru += cost.table
                    by_target[f"{spec.logical_name} (refused)"] += cost.table
                    continue
                cost = item_write_cost(old, new, spec, transactional=kind.startswith("tx-"))
                wru += cost.total
                by_target[spec.logical_name] += cost.table
                for index, units in cost.indexes.items():
                    if units:
                        by_target[f"{spec.logical_name}.{index}"] += units
        elif op == "GetItem" and not failed:
            if parsed.get("Item") is not None and params is not None:
                full = self._get(params["TableName"], params["Key"])
                rru += read_units(
                    item_size(full or {}), consistent=bool(params.get("ConsistentRead"))
                )
            else:
                rru += read_units(0, consistent=True)
        elif op in ("Query", "Scan") and not failed:
            items = [deserialize(i) for i in parsed.get("Items", [])]
            size = sum(item_size(i) for i in items)
            count, scanned = parsed.get("Count", 0), parsed.get("ScannedCount", 0)
            if count and scanned > count:
                size = size * scanned // count
            consistent = bool(params and params.get("ConsistentRead"))
            rru += read_units(size, consistent=consistent)
        elif op == "BatchGetItem" and not failed and params is not None:
            for table, items in parsed.get("Responses", {}).items():
                consistent = bool(params["RequestItems"][table].get("ConsistentRead"))
                for item in items:
                    full = self._get(table, self._key(table, item)) or {}
                    rru += read_units(item_size(full), consistent=consistent)
        with self._lock:
            self.totals.requests[f"dynamodb.{op}"] += 1
            self.totals.wru += wru
            self.totals.rru += rru
            self.totals.wru_by_target.update(by_target)


def history_both_ways(stores: Stores, flow_run_id: str) -> list[str]:
    """Write units of one transition with the history inline and as separate items.

    From the trivial flow run's stored item: inline, the ``UpdateItem`` rewrites the
    item with its history; separate, the item without history is updated and one
    history item (``pk = run id, sk = v#<version>``) put in the same transaction
    (twice the units). The state index (``by_state``) costs the same both ways and
    is left out. Longer histories repeat the run's entries.
    """
    spec = stores.specs.runs
    item = stores.db.get(spec.name, {"id": flow_run_id})
    assert item is not None
    entries = list(item["history"])
    lines = []
    for states in (3, 10, 30, 100):
        history = [entries[i % len(entries)] for i in range(states)]
        new = {**item, "history": history}
        old = {**item, "history": history[:-1]}
        inline = item_write_cost(old, new, spec).table
        bare = {k: v for k, v in item.items() if k not in ("history", "history_dropped")}
        entry = {"pk": item["id"], "sk": f"v#{states:08d}", "state": history[-1]}
        separate = 2 * write_units(item_size(bare)) + 2 * write_units(item_size(entry))
        lines.append(
            f"  {states:3d} states ({item_size(new):6,d} B item): inline {inline} WRU, "
            f"separate items {separate} WRU per transition"
        )
    return lines


def describe(label: str, totals: Totals, count: int) -> tuple[float, str]:
    requests = sum(n for op, n in totals.requests.items() if op.startswith("dynamodb.")) / count
    puts = totals.requests.get("s3.PutObject", 0) / count
    wru, rru = totals.wru / count, totals.rru / count
    dollars = dollars_per_million(wru, rru, puts)
    ops = ", ".join(
        f"{op.split('.', 1)[1]} {n / count:.2f}" for op, n in sorted(totals.requests.items())
    )
    targets = ", ".join(f"{t} {n / count:.2f}" for t, n in sorted(totals.wru_by_target.items()))
    line = (
        f"per {label}: {requests:.2f} DynamoDB requests, {wru:.2f} WRU, {rru:.2f} RRU, "
        f"{puts:.2f} S3 PUT -> ${dollars:.2f} per million {label}s"
    )
    return dollars, f"{line}\n    requests: {ops}\n    WRU by table/index: {targets}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--flows", type=int, default=20)
    args = parser.parse_args()
    stores = embedded_stores()
    meter = CapacityMeter(stores)
    client = DirectEngineClient(stores)
    with use_engine_client(client):
        flow_with_tasks(5)  # warm up: imports, connections
        trivial_flow()
        start = meter.snapshot()
        for _ in range(args.flows):
            trivial_flow()
        flows = meter.snapshot().minus(start)
        start = meter.snapshot()
        flow_with_tasks(args.tasks)
        with_tasks = meter.snapshot().minus(start)
    client.close()
    per_flow = Totals(
        requests=Counter({k: v for k, v in flows.requests.items()}),
        wru=flows.wru,
        rru=flows.rru,
        wru_by_target=flows.wru_by_target,
    )
    # a task run: the flow with tasks minus one trivial flow run, per task
    one_flow = Totals(
        requests=Counter({k: round(v / args.flows) for k, v in flows.requests.items()}),
        wru=flows.wru / args.flows,
        rru=flows.rru / args.flows,
        wru_by_target=Counter({k: v / args.flows for k, v in flows.wru_by_target.items()}),
    )
    tasks = Totals(
        requests=with_tasks.requests - one_flow.requests,
        wru=with_tasks.wru - one_flow.wru,
        rru=with_tasks.rru - one_flow.rru,
        wru_by_target=Counter(
            {k: v - one_flow.wru_by_target.get(k, 0) for k, v in with_tasks.wru_by_target.items()}
        ),
    )
    print(f"== cost on the embedded backend ({args.tasks} task runs, {args.flows} flow runs) ==")
    task_dollars, task_line = describe("task run", tasks, args.tasks)
    flow_dollars, flow_line = describe("flow run", per_flow, args.flows)
    print(task_line)
    print(flow_line)
    print("state history, one transition of the trivial flow run (table units only):")
    newest = stores.runs.list_flow_runs(FlowRunFilter(flow_name="trivial-flow"), limit=1)
    print("\n".join(history_both_ways(stores, newest.items[0].id)))
    print(
        json.dumps(
            {
                "dollars_per_million_task_runs": round(task_dollars, 3),
                "goal_task_runs": 1.0,
                "dollars_per_million_flow_runs": round(flow_dollars, 3),
                "goal_flow_runs": 20.0,
            }
        )
    )


if __name__ == "__main__":
    main()
