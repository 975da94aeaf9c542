# From docs/v3/how-to-guides/workflows/global-concurrency-limits.mdx, "Using strict mode"
# (prefect -> sdk). Added: the flow runs once without the limit (strict mode fails the
# task), then once after creating it; the outcomes are printed.
from sdk import flow, get_client, task
from sdk.concurrency.sync import concurrency


@task
def process_critical_data(x, y):
    # strict=True ensures this task fails fast if concurrency can't be enforced
    with concurrency("database", occupy=1, strict=True):
        return x + y


@flow
def critical_flow():
    process_critical_data(1, 2)


if __name__ == "__main__":
    state = critical_flow(return_state=True)
    print("without the limit:", state.type.value)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name("database", 1)
    print("with the limit:", critical_flow(return_state=True).type.value)

# expect: without the limit: FAILED
# expect: with the limit: COMPLETED
