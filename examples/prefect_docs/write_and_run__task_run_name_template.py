# From Prefect 3's documentation ("Write and run flows": task_run_name templates), with
# only the import changed: `from prefect import ...` -> `from sdk import ...`.
import datetime
from sdk import flow, task


@task(name="My Example Task", 
      description="An example task for a tutorial.",
      task_run_name="hello-{name}-on-{date:%A}")
def my_task(name, date):
    pass


@flow
def my_flow():
    # creates a run with a name like "hello-marvin-on-Thursday"
    my_task(name="marvin", date=datetime.datetime.now(datetime.timezone.utc))

if __name__ == "__main__":
    my_flow()
# expect-stderr: Task run 'hello-marvin-on-
