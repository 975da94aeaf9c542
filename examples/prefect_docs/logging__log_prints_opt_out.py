# From Prefect 3's documentation ("Add logging": opting a task out of log_prints), with
# only the import changed (`prefect` -> `sdk`). The docs define the flow; the call is
# added. The task's print stays a plain print on stdout.
from sdk import task, flow

@task(log_prints=False)
def my_task():
    print("not logging print statements in this task")

@flow(log_prints=True)
def my_flow():
    print("we're logging print statements from a flow")
    my_task()


my_flow()
# expect: not logging print statements in this task
# expect-stderr: - we're logging print statements from a flow
