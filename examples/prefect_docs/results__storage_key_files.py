# From Prefect 3's documentation ("Results": result filenames), with only the import
# changed (`prefect` -> `sdk`). The docs define the flow; the call and the reads at the
# end are added. Stratoflow's default result storage is the installation's results
# bucket (S3), where each result is the object results/<result_storage_key>; reading them
# back uses sdk.results.ResultStore without a result_storage.
from sdk import flow, task


@task(result_storage_key="hello-{parameters[name]}.pickle")
def hello_world(name: str = "world"):
    return f"hello {name}"


@flow
def my_flow():
    hello_world()
    hello_world(name="foo")
    hello_world(name="bar")


my_flow()
from sdk.results import ResultStore
store = ResultStore()
print([store.read(key=f"hello-{n}.pickle").result for n in ("world", "foo", "bar")])
# expect: ['hello world', 'hello foo', 'hello bar']
