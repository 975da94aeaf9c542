# From Prefect 3's documentation, concepts/states ("Task return values"), with only the
# imports changed (`prefect` -> `sdk`). The flow is called with return_state=True and
# its final state printed, so the runner can check that the returned Failed state
# failed the task and the flow ("1/2 states failed.").
from sdk import flow, task
from sdk.states import Completed, Failed


@task
def toggle_task(fail: bool):
    if fail:
        return Failed(message="I was instructed to fail.")
    else:
        return Completed(message="I was instructed to succeed.")


@flow
def example():
    # this run will be set to a `Failed` state
    state_one = toggle_task(fail=True)

    # this run will be set to a `Completed` state
    state_two = toggle_task(fail=False)

    # similarly, the flow run will fail because we return a `Failed` state
    return state_one, state_two


state = example(return_state=True)
print(f"flow ended {state.name}: {state.message}")
first, second = state.result(raise_on_failure=False)
print(f"task states: {first.name} ({first.message}), {second.name} ({second.message})")
# expect: flow ended Failed: 1/2 states failed.
# expect: task states: Failed (I was instructed to fail.), Completed (I was instructed to succeed.)
