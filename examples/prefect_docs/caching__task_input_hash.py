# Prefect 3's `task_input_hash` cache key function (src/prefect/tasks.py; the pattern of
# the "Caching" concepts page's cache_key_fn examples), imports from `sdk`: equal inputs
# share an entry, other inputs do not.
from sdk import flow, task
from sdk.tasks import task_input_hash


@task(cache_key_fn=task_input_hash)
def hello_task(name_input):
    print(f"computing for {name_input}")
    return f"Hello {name_input}!"


@flow
def hello_flow(name_input):
    return [hello_task(name_input), hello_task(name_input), hello_task("other")]


print(hello_flow("Marvin"))
# expect: ['Hello Marvin!', 'Hello Marvin!', 'Hello other!']
# expect-stderr: Finished in state Cached(type=COMPLETED)
