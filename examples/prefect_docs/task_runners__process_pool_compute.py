# From Prefect 3's API reference for `prefect.task_runners.ProcessPoolTaskRunner`
# (the class docstring in src/prefect/task_runners.py, linked from the "Task runners"
# page), with only the imports changed: `prefect` -> `sdk`. The `__main__` block runs
# the flow and prints its result.
from sdk import flow, task
from sdk.task_runners import ProcessPoolTaskRunner

@task
def compute_heavy_task(n: int) -> int:
    # CPU-intensive computation that benefits from process isolation
    return sum(i ** 2 for i in range(n))

@flow(task_runner=ProcessPoolTaskRunner(max_workers=4))
def my_flow():
    futures = []
    for i in range(10):
        future = compute_heavy_task.submit(i * 1000)
        futures.append(future)

    return [future.result() for future in futures]

if __name__ == "__main__":
    print(f"results: {my_flow()}")
# expect: results: [0, 332833500, 2664667000, 8995500500, 21325334000, 41654167500, 71982001000, 114308834500, 170634668000, 242959501500]
