# From Prefect 3's documentation ("Results": result storage on flows and tasks), with
# the imports changed (`prefect` -> `sdk`). Blocks arrive in a later phase, so the
# LocalFileSystem is used as an instance (no `.save(...)`, no "local-file-system/name"
# reference), in a temporary directory; the listing and reads at the end are added.
import os
import tempfile

from sdk import flow, task
from sdk.filesystems import LocalFileSystem

storage = LocalFileSystem(basepath=tempfile.mkdtemp())


@task(persist_result=True, result_storage_key="task-result")
def my_task():
    return 42


@flow(result_storage=storage)  # the flow's result, and its tasks', go to storage
def my_flow():
    my_task()
    return "result"


state = my_flow(return_state=True)
print(sorted(os.listdir(storage.basepath))[-1], state.result())
# expect: task-result result
