# From Prefect 3's documentation, concepts/flows ("Custom named states"), with only the
# imports changed (`prefect` -> `sdk`). Both calls' final states are printed.
from sdk import flow
from sdk.states import Completed


@flow
def my_flow(work_to_do: bool):
    if not work_to_do:
        return Completed(message="No work to do 💤", name="Skipped")
    else:
        return Completed(message="Work was done 💪")


if __name__ == "__main__":
    my_flow(work_to_do=False)
    skipped = my_flow(work_to_do=False, return_state=True)
    done = my_flow(work_to_do=True, return_state=True)
    print(f"{skipped.type.value} {skipped.name}: {skipped.message}")
    print(f"{done.type.value} {done.name}: {done.message}")
# expect: COMPLETED Skipped: No work to do 💤
# expect: COMPLETED Completed: Work was done 💪
