# From docs/v3/how-to-guides/workflows/global-concurrency-limits.mdx, "Throttle task
# submission" (prefect -> sdk). Added: the limit is created first (20 slots, 50/s decay,
# so the 100 submissions take about two seconds) and the flow waits for its tasks.
from sdk import flow, get_client, task
from sdk.concurrency.sync import rate_limit


@task
def my_task(i):
    return i


@flow
def my_flow():
    futures = []
    for _ in range(100):
        rate_limit("slow-my-flow", occupy=1)
        futures.append(my_task.submit(1))
    return sum(f.result() for f in futures)


if __name__ == "__main__":
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(
            "slow-my-flow", 20, slot_decay_per_second=50.0
        )
    print("submitted", my_flow())

# expect: submitted 100
