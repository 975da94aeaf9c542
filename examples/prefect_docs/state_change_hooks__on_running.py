# From Prefect 3's documentation, how-to-guides/workflows/state-change-hooks ("Execute
# code when a task starts running"), with only the import changed (`prefect` -> `sdk`)
# and the flow called at the end.
from sdk import flow, task
import time

def record_start_time(task, task_run, state):
    print(f"Task {task.name} started at {time.time()}")

@task(on_running=[record_start_time])
def my_task():
    return "hello"

# Or use the decorator pattern
@task
def another_task():
    return "world"

@another_task.on_running
def log_start(task, task_run, state):
    print(f"Starting {task.name}!")

@flow
def my_flow():
    my_task()
    another_task()


my_flow()
# expect: Task my_task started at
# expect: Starting another_task!
