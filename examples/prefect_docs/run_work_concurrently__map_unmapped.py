# From Prefect 3's documentation ("Run work concurrently": mapping with `unmapped`),
# with only the import changed: `from prefect import ...` -> `from sdk import ...`.
# The docs' flow returns `futures.result()`: returning the futures themselves gives
# their final states, as in Prefect (resolve_futures_to_states).
from sdk import flow, task, unmapped

@task
def sum_plus(x, static_iterable):
    return x + sum(static_iterable)

@flow
def sum_it(numbers, static_iterable):
    futures = sum_plus.map(numbers, unmapped(static_iterable))
    return futures.result()

resulting_futures = sum_it([1, 2, 3], [4, 5, 6])
print(resulting_futures)
# expect: [16, 17, 18]
