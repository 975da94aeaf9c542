# From docs/v3/how-to-guides/workflows/global-concurrency-limits.mdx, "Use rate_limit",
# "Synchronous usage" (prefect -> sdk). Added: the "rate-limited-api" limit is created
# first (5 slots, 10 slots/s decay), and the flow waits for its tasks.
from sdk import flow, get_client, task
from sdk.concurrency.sync import rate_limit


@task
def make_http_request():
    rate_limit("rate-limited-api")
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
