# From docs/v3/how-to-guides/workflows/global-concurrency-limits.mdx, "Asynchronous usage"
# (prefect -> sdk). Added: the "database" limit is created first, results are printed.
import asyncio  # noqa: F401  (unused, as in the docs)

from sdk import flow, get_client, task
from sdk.concurrency.asyncio import concurrency
from sdk.futures import wait


@task
async def process_data(x, y):
    async with concurrency("database", occupy=1):
        return x + y


@flow
def my_flow():
    futures = []
    for x, y in [(1, 2), (2, 3), (3, 4), (4, 5)]:
        futures.append(process_data.submit(x, y))

    wait(futures)
    return [f.result() for f in futures]


if __name__ == "__main__":
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name("database", 1)
    print("results", my_flow())

# expect: results [3, 5, 7, 9]
