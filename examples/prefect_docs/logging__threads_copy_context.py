# From Prefect 3's documentation ("Add logging": log from threads), with only the
# imports changed (`prefect` -> `sdk`). The docs define the flow; the call is added.
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from sdk import flow, task
from sdk.logging import get_run_logger
def process_single_file(path: str) -> str:
    # Runs in a worker thread; works because the caller invoked us via
    # ctx.run(...), so the parent's run context is active here.
    logger = get_run_logger()
    logger.info(f"Processing {path}")
    return path
@task
def process_files(files: list[str]) -> list[str]:
    # Snapshot the parent thread's context once per worker invocation.
    # Each ctx.run(...) runs the worker with that context active.
    contexts = [copy_context() for _ in files]
    with ThreadPoolExecutor(max_workers=4) as executor:
        return list(
            executor.map(
                lambda ctx, f: ctx.run(process_single_file, f),
                contexts,
                files,
            )
        )
@flow
def my_flow() -> None:
    process_files(["file1.txt", "file2.txt", "file3.txt"])


my_flow()
# expect-stderr: Task run 'process_files-0' - Processing file1.txt
# expect-stderr: Task run 'process_files-0' - Processing file3.txt
