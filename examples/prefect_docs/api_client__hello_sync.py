# From docs/v3/advanced/api-client.mdx, "Getting a client" (the sync tab; prefect -> sdk).
from sdk import get_client

with get_client(sync_client=True) as client:
    response = client.hello()
    print(response.json())  # 👋

# expect: 👋
