# Prefect docs: docs/v3/concepts/runtime-context.mdx, "Access the run context directly".
# The page's two lines, then (added) a flow and a task that print what they get, and the
# page's statement that get_run_context() raises outside a run.
from sdk.context import FlowRunContext, TaskRunContext

flow_run_ctx = FlowRunContext.get()
task_run_ctx = TaskRunContext.get()
print("outside a run:", flow_run_ctx, task_run_ctx)

from sdk import flow, task
from sdk.context import get_run_context


@task
def my_task():
    ctx = get_run_context()
    print("task context:", type(ctx).__name__, ctx.task_run.name)
    print("flow context from the task:", FlowRunContext.get().flow.name)


@flow
def my_flow():
    ctx = get_run_context()
    print("flow context:", type(ctx).__name__, ctx.flow.name, ctx.parameters)
    my_task()


if __name__ == "__main__":
    my_flow()
    try:
        get_run_context()
    except Exception as exc:
        print(type(exc).__name__, exc)

# expect: outside a run: None None
# expect: flow context: FlowRunContext my-flow {}
# expect: task context: TaskRunContext my_task-0
# expect: flow context from the task: my-flow
# expect: MissingContextError No run context available. You are not in a flow or task run context.
