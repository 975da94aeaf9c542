# From Prefect 3's documentation ("Caching": a policy ignoring one input), with only
# the imports changed (`prefect` -> `sdk`). The second call hits the cache: "running..."
# is printed once.
from sdk import task
from sdk.cache_policies import INPUTS


my_custom_policy = INPUTS - 'debug'

@task(cache_policy=my_custom_policy)
def my_cached_task(x: int, debug: bool = False):
    print('running...')
    return x + 42


my_cached_task(1)
my_cached_task(1, debug=True) # still uses the cache
# expect: running...
# expect-stderr: Finished in state Cached(type=COMPLETED)
