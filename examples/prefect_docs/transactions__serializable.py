# Prefect docs: docs/v3/advanced/transactions.mdx, "Handling race conditions" (SERIALIZABLE).
# Imports changed to sdk. Trimmed: the page's `store=ResultStore(lock_manager=
# FileSystemLockManager(lock_files_directory=PREFECT_HOME.value() / "locks"))` argument and
# its ResultStore / PREFECT_HOME imports: SERIALIZABLE here takes the result cache's own
# conditional-write lock on the key, so no lock manager is needed (sdk.locking's
# FileSystemLockManager is the same lock). The main block runs in a fresh temporary
# directory. One thread writes the file; the other waits for its commit and exits early.
import os
import tempfile
import threading
import uuid
from sdk import flow, task
from sdk.locking.filesystem import FileSystemLockManager  # noqa: F401  (the page's import)
from sdk.transactions import IsolationLevel, transaction


@task
def download_data():
    return f"{threading.current_thread().name} is the winner!"


@task
def write_file(contents: str):
    "Writes to a file."
    with open("race-condition.txt", "w") as f:
        f.write(contents)


@flow
def pipeline(transaction_key: str):
    with transaction(
        key=transaction_key,
        isolation_level=IsolationLevel.SERIALIZABLE,
    ) as txn:
        if txn.is_committed():
            print("Data file has already been written. Exiting early.")
            return
        data = download_data()
        write_file(data)


if __name__ == "__main__":
    os.chdir(tempfile.mkdtemp())
    transaction_key = f"race-condition-{uuid.uuid4()}"
    thread_1 = threading.Thread(target=pipeline, name="Thread 1", args=(transaction_key,))
    thread_2 = threading.Thread(target=pipeline, name="Thread 2", args=(transaction_key,))

    thread_1.start()
    thread_2.start()

    thread_1.join()
    thread_2.join()

# expect: Data file has already been written. Exiting early.
