# From Prefect 3's documentation ("How to cache workflow step outputs"), with only
# the import changed: `from prefect import task, flow` -> `from sdk import task, flow`.
# The second add_one(1) ends Cached(type=COMPLETED) without running.
from sdk import task, flow

@task(persist_result=True)
def add_one(x: int):
    return x + 1

@flow
def my_flow():
    add_one(1) # will not be cached
    add_one(1) # will be cached
    add_one(2) # will not be cached

if __name__ == "__main__":
    my_flow()
# expect-stderr: Task run 'add_one-1' - Finished in state Cached(type=COMPLETED)
# expect-stderr: Task run 'add_one-0' - Finished in state Completed()
# expect-stderr: Task run 'add_one-2' - Finished in state Completed()
