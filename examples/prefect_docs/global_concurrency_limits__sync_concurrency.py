# From docs/v3/how-to-guides/workflows/global-concurrency-limits.mdx, "Synchronous usage"
# (prefect -> sdk). Added: the "database" limit is created first (the page does it with
# `prefect gcl create`), and the results are printed for the runner to check.
from sdk import flow, get_client, task
from sdk.concurrency.sync import concurrency
from sdk.futures import wait


@task
def process_data(x, y):
    with concurrency("database", occupy=1):
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
        client.upsert_global_concurrency_limit_by_name("database", 2)
    print("results", my_flow())
    with get_client(sync_client=True) as client:
        print("active slots", client.read_global_concurrency_limit_by_name("database").active_slots)

# expect: results [3, 5, 7, 9]
# expect: active slots 0
