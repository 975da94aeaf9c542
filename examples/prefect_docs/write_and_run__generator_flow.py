# From Prefect 3's documentation ("Write and run flows": a generator flow), with only
# the import changed: `from prefect import flow` -> `from sdk import flow`.
from sdk import flow


@flow
def generator():
    for i in range(10):
        yield i


for val in generator():
    print(val)
# expect: 0
# expect: 9
