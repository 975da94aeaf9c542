# From Prefect 3's documentation ("Caching": cache key functions), with only the import
# changed (`prefect` -> `sdk`). The docs define the task; the two calls and the print
# are added: a static key makes the second call (another argument) a cache hit.
from sdk import task


def static_cache_key(context, parameters):
    # return a constant
    return "static cache key"


@task(cache_key_fn=static_cache_key)
def my_cached_task(x: int):
    return x + 1


print(my_cached_task(1), my_cached_task(2))
# expect: 2 2
