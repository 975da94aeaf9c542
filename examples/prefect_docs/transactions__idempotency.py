# Prefect docs: docs/v3/advanced/transactions.mdx, "Idempotency". Imports changed to sdk;
# the main block runs in a fresh temporary directory and calls pipeline() twice (the page
# describes the second run: it exits early because the transaction's record exists).
import os
import tempfile

from sdk import task, flow
from sdk.transactions import transaction


@task
def download_data():
    """Imagine this downloads some data from an API"""
    return "some data"


@task
def write_data(data: str):
    """This writes the data to a file"""
    with open("data.txt", "w") as f:
        f.write(data)


@flow(log_prints=True)
def pipeline():
    with transaction(key="download-and-write-data") as txn:
        if txn.is_committed():
            print("Data file has already been written. Exiting early.")
            return
        data = download_data()
        write_data(data)


if __name__ == "__main__":
    os.chdir(tempfile.mkdtemp())
    pipeline()
    pipeline()

# expect-stderr: Data file has already been written. Exiting early.
