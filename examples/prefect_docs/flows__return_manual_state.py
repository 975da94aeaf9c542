# From Prefect 3's documentation, concepts/flows ("Final state determination": a flow
# returning a state made by hand), with only the imports changed (`prefect` -> `sdk`).
# The call's final state is printed for the runner.
from sdk import flow, task
from sdk.states import Completed, Failed


@task
def always_fails_task():
    raise ValueError("I fail successfully")


@task
def always_succeeds_task():
    print("I'm fail safe!")
    return "success"


@flow
def always_succeeds_flow():
    x = always_fails_task.submit()
    y = always_succeeds_task.submit()
    if y.result() == "success":
        return Completed(message="I am happy with this result")
    else:
        return Failed(message="How did this happen!?")


if __name__ == "__main__":
    state = always_succeeds_flow(return_state=True)
    print(f"flow ended {state.name}: {state.message}")
# expect: flow ended Completed: I am happy with this result
