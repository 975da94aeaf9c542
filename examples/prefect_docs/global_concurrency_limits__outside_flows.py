# From docs/v3/how-to-guides/workflows/global-concurrency-limits.mdx, "Use outside of
# flows" (prefect -> sdk). Added: the limit is created first (async client).
import asyncio

from sdk import get_client
from sdk.client.schemas.actions import GlobalConcurrencyLimitCreate
from sdk.concurrency.asyncio import rate_limit


async def main():
    for _ in range(10):
        await rate_limit("rate-limited-api")
        print("Making an HTTP request...")


async def setup():
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name="rate-limited-api", limit=5, slot_decay_per_second=10.0
            )
        )


if __name__ == "__main__":
    asyncio.run(setup())
    asyncio.run(main())

# expect: Making an HTTP request...
