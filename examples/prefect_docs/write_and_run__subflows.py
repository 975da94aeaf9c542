# From Prefect 3's documentation ("Write and run flows": flows calling flows), with the
# import changed (`from prefect import ...` -> `from sdk import ...`). The docs' block
# uses `random` without importing it and never calls the flow: `import random` and the
# call at the end are added.
import random

from sdk import flow, task


@task
def generate_a_number():
    return random.randint(0, 100)


@flow
def is_number_even(number: int):
    return number % 2 == 0


@flow
def even_or_odd():
    number = generate_a_number()
    if is_number_even(number):
        print("The number is even")
    else:
        print("The number is odd")


even_or_odd()
# expect: The number is
# expect-stderr: Finished in state Completed()
