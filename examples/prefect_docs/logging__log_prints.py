# From Prefect 3's documentation ("Add logging": log with print statements), with only
# the import changed (`prefect` -> `sdk`). The docs define the flow; the call is added.
# Both prints become INFO run logs (on stderr), the task inheriting log_prints.
from sdk import task, flow

@task
def my_task():
    print("we're logging print statements from a task")

@flow(log_prints=True)
def my_flow():
    print("we're logging print statements from a flow")
    my_task()


my_flow()
# expect-stderr: INFO    | stratoflow.flow_runs - Flow run
# expect-stderr: - we're logging print statements from a flow
# expect-stderr: - we're logging print statements from a task
