"""``sdk.utilities.annotations``: Prefect's ``prefect.utilities.annotations``.

``unmapped(x)`` passes ``x`` to every call of ``task.map``; ``allow_failure(f)`` lets a
task run even when the upstream ``f`` failed (it receives the exception); ``quote(x)``
passes ``x`` as it is, without looking inside it for futures (no resolution, no upstream
tracking, no walk through a large collection); ``opaque(future)`` waits for the future
and passes its result without looking inside it.
"""

from runtime.engine.inputs import allow_failure, opaque, quote, unmapped

__all__ = ["allow_failure", "opaque", "quote", "unmapped"]
