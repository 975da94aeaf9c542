"""The Stratoflow demo: an ETL flow on the embedded default (no AWS, no server to start).

Run it with ``make demo`` (or ``.venv/bin/python examples/etl_demo.py``). It:

1. maps an ``extract`` task over six batches (cached by inputs for an hour),
2. ``transform`` fails once for one batch and is retried,
3. ``load`` runs under a task-tag concurrency limit of 2 ("warehouse"),
4. runs the flow twice: the second run's extracts are Cached, not recomputed,
5. prints every run, its state history and its duration, read back from the stores.
"""

from __future__ import annotations

import time
from datetime import timedelta

from rich.console import Console
from rich.table import Table

from sdk import flow, get_client, get_run_logger, task
from sdk.cache_policies import INPUTS

_transform_failures: set[int] = set()


@task(cache_policy=INPUTS, cache_expiration=timedelta(hours=1))
def extract(batch: int) -> list[int]:
    """Pretend to read a batch of rows from a source (slow, so worth caching)."""
    time.sleep(0.05)
    return [batch * 10 + i for i in range(5)]


@task(retries=2, retry_delay_seconds=0.2)
def transform(rows: list[int]) -> list[int]:
    """Square the rows; batch 3 fails the first time it is seen (a flaky dependency)."""
    if rows[0] == 30 and 3 not in _transform_failures:
        _transform_failures.add(3)
        raise ConnectionError("upstream API hiccup")
    return [r * r for r in rows]


@task(tags=["warehouse"])
def load(rows: list[int]) -> int:
    """Write rows to the 'warehouse' (at most two loads at once: a tag limit)."""
    time.sleep(0.1)
    return len(rows)


@flow(log_prints=True)
def etl(batches: int = 6) -> int:
    """Extract, transform and load ``batches`` batches; returns how many rows were loaded."""
    raw = extract.map(range(batches))
    cleaned = transform.map(raw)
    loaded = load.map(cleaned)
    total = sum(loaded.result())
    get_run_logger().info("loaded %s rows from %s batches", total, batches)
    print(f"done: {total} rows")
    return total


def show_runs(console: Console) -> None:
    """Print every flow run with its task runs, state histories and durations."""
    with get_client(sync_client=True) as client:
        for flow_run in reversed(client.read_flow_runs(flow_name="etl")):
            history = " -> ".join(s.name for s in client.read_flow_run_states(flow_run.id))
            console.print(
                f"\n[bold]flow run {flow_run.name}[/bold] ({flow_run.state.name}, "
                f"{flow_run.total_run_time:.2f} s): {history}"
            )
            table = Table("task run", "final state", "history", "duration (s)")
            task_runs = sorted(
                client.read_task_runs(flow_run_id=flow_run.id), key=lambda t: (t.task_key, t.name)
            )
            for task_run in task_runs:
                states = client.read_task_run_states(task_run.id)
                duration = (
                    (task_run.end_time - task_run.start_time).total_seconds()
                    if task_run.start_time and task_run.end_time
                    else 0.0
                )
                table.add_row(
                    task_run.name,
                    task_run.state.name,
                    " -> ".join(s.name for s in states),
                    f"{duration:.3f}",
                )
            console.print(table)
            logs = client.read_logs(flow_run.id)
            console.print(f"{len(logs)} log lines stored, e.g. {logs[-1].message!r}")
        entries = client.read_cache_entries()
        console.print(f"\n{len(entries)} cache entries (shared across flow runs and processes)")


def main() -> None:
    console = Console(width=120)
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="warehouse", concurrency_limit=2)
    for attempt in (1, 2):
        started = time.perf_counter()
        total = etl()
        console.print(
            f"[green]run {attempt}: etl() returned {total} in "
            f"{time.perf_counter() - started:.2f} s[/green]"
        )
    show_runs(console)


if __name__ == "__main__":
    main()
