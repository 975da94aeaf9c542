# From Prefect 3's documentation ("Results": end-to-end example, persist and then read a
# result), with only the imports changed (`prefect` -> `sdk`) and two deliberate changes:
# Stratoflow's default result storage is the installation's bucket, not ~/.prefect/storage,
# so the task is given the LocalFileSystem the reader uses (`result_storage=storage`);
# and its basepath is a temporary directory instead of "~/.prefect/storage".
import tempfile

from sdk import flow, task
from sdk.filesystems import LocalFileSystem

storage = LocalFileSystem(basepath=tempfile.mkdtemp())

@task(persist_result=True, result_storage_key="my-result", result_storage=storage)
def compute_value():
    return {"answer": 42}

@flow
def my_flow():
    compute_value()

# Run the flow to persist the result
my_flow()

from sdk.results import ResultStore

store = ResultStore(result_storage=storage)

record = store.read(key="my-result")
print(record.result)  # {"answer": 42}
print(record.metadata.serializer)      # PickleSerializer(type='pickle', ...)
print(record.metadata.storage_key)     # "my-result"
print(record.metadata.expiration)      # None or a datetime
# expect: {'answer': 42}
# expect: PickleSerializer(type='pickle')
# expect: my-result
# expect: None
