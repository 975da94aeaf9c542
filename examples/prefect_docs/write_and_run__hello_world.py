# From Prefect 3's documentation ("Write and run flows": the first flow), with only the
# import changed: `from prefect import flow` -> `from sdk import flow`. The docs call
# `my_workflow()` in a second block; here the call's value is printed.
from sdk import flow


@flow
def my_workflow() -> str:
    return "Hello, world!"


print(my_workflow())
# expect: Hello, world!
# expect-stderr: Finished in state Completed()
