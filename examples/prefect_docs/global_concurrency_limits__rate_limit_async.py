# From docs/v3/how-to-guides/workflows/global-concurrency-limits.mdx, "Use rate_limit",
# "Asynchronous usage" (prefect -> sdk). Added: the limit is created first.
import asyncio  # noqa: F401  (unused, as in the docs)

from sdk import flow, get_client, task
from sdk.concurrency.asyncio import rate_limit


@task
async def make_http_request():
    await rate_limit("rate-limited-api")
    print("Making an HTTP request...")


@flow
def my_flow():
    for _ in range(10):
        make_http_request.submit()


if __name__ == "__main__":
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(
            "rate-limited-api", 5, slot_decay_per_second=10.0
        )
    my_flow()
    print("done")

# expect: Making an HTTP request...
# expect: done
