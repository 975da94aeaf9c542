# Prefect docs: docs/v3/concepts/runtime-context.mdx, "Access runtime information"
# (my_runtime_info.py). Unchanged but for the imports.
from sdk import flow, task
from sdk import runtime

@flow(log_prints=True)
def my_flow(x):
    print("My name is", runtime.flow_run.name)
    print("I belong to deployment", runtime.deployment.name)
    my_task(2)

@task
def my_task(y):
    print("My name is", runtime.task_run.name)
    print("Flow run parameters:", runtime.flow_run.parameters)

if __name__ == "__main__":
    my_flow(1)

# expect-stderr: I belong to deployment None
# expect-stderr: My name is my_task-0
# expect-stderr: Flow run parameters: {'x': 1}
