# Prefect docs: docs/v3/advanced/transactions.mdx, "Tasks also have on_commit lifecycle hooks"
# (the page's continuation of "Write your first transaction"). Imports changed to sdk; the
# main block runs in a fresh temporary directory and passes two lines of contents, so the
# quality test passes and the transaction commits (with the page's "hello world" it rolls back).
import os
import tempfile
from time import sleep

from sdk import task, flow
from sdk.transactions import transaction


@task
def write_file(contents: str):
    "Writes to a file."
    with open("side-effect.txt", "w") as f:
        f.write(contents)


@write_file.on_rollback
def del_file(transaction):
    "Deletes file."
    os.unlink("side-effect.txt")


@task
def quality_test():
    "Checks contents of file."
    with open("side-effect.txt", "r") as f:
        data = f.readlines()

    if len(data) < 2:
        raise ValueError("Not enough data!")


@flow
def pipeline(contents: str):
    with transaction():
        write_file(contents)
        sleep(2) # sleeping to give you a chance to see the file
        quality_test()


@write_file.on_commit
def confirmation(transaction):
    print("committing a record now using the task's cache key!")


if __name__ == "__main__":
    os.chdir(tempfile.mkdtemp())
    pipeline(contents="hello\nworld\n")

# expect: committing a record now using the task's cache key!
