# Prefect docs: docs/v3/advanced/transactions.mdx, "Handling race conditions" (READ_COMMITTED).
# Imports changed to sdk; `import uuid` added (the page uses uuid without importing it); the
# main block runs in a fresh temporary directory and prints the winner at the end (either
# thread may win: that is the page's point).
import os
import tempfile
import threading
import uuid

from sdk import flow, task
from sdk.transactions import transaction


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
    with transaction(key=transaction_key) as txn:
        if txn.is_committed():
            print("Data file has already been written. Exiting early.")
            return
        data = download_data()
        write_file(data)


if __name__ == "__main__":
    os.chdir(tempfile.mkdtemp())
    # Run the pipeline twice to see the race condition
    transaction_key = f"race-condition-{uuid.uuid4()}"
    thread_1 = threading.Thread(target=pipeline, name="Thread 1", args=(transaction_key,))
    thread_2 = threading.Thread(target=pipeline, name="Thread 2", args=(transaction_key,))

    thread_1.start()
    thread_2.start()

    thread_1.join()
    thread_2.join()
    with open("race-condition.txt") as f:
        print(f.read())

# expect: is the winner!
