# From Prefect 3's documentation ("Task runners", docs/v3/concepts/task-runners.mdx:
# "use isolated processes to run tasks in parallel"), with only the imports changed:
# `prefect` -> `sdk`. The page only defines the flow; the `__main__` block runs it
# (a spawn-based process pool needs that guard, in Prefect as here) and prints a line.
from sdk import flow, task
from sdk.futures import wait
from sdk.task_runners import ProcessPoolTaskRunner
import time

@task
def stop_at_floor(floor):
    print(f"elevator moving to floor {floor}")
    time.sleep(floor)
    print(f"elevator stops on floor {floor}")

@flow(task_runner=ProcessPoolTaskRunner(max_workers=3))
def elevator():
    floors = []

    for floor in range(10, 0, -1):
        floors.append(stop_at_floor.submit(floor))

    wait(floors) # wait for the sequence of futures to complete

if __name__ == "__main__":
    state = elevator(return_state=True)
    print(f"elevator flow ended {state.name}")
# expect: elevator moving to floor 10
# expect: elevator stops on floor 1
# expect: elevator flow ended Completed
