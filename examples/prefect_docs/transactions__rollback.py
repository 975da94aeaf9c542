# Prefect docs: docs/v3/advanced/transactions.mdx, "Write your first transaction".
# Unchanged but for the imports. As the page says, the flow fails (exit status 1) and the
# write_file task's on_rollback hook deletes side-effect.txt.
import os
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


if __name__ == "__main__":
    pipeline(contents="hello world")

# expect-exit: 1
# expect-stderr: Running rollback hook 'del_file'
# expect-stderr: Rollback hook 'del_file' finished running successfully
# expect-stderr: ValueError: Not enough data!
