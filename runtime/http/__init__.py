"""The HTTP client side of the Stratoflow API (docs/api.md), in modules named for what they hold.

* :mod:`runtime.http.errors`: the error taxonomy (one ``ApiError`` class per answer);
* :mod:`runtime.http.signing`: SigV4 signing for API Gateway's IAM auth;
* :mod:`runtime.http.transport`: ``ApiTransport`` (pooled connections, retries);
* :mod:`runtime.http.client`: ``HttpApi``, the typed REST client of the engine's routes.

Nothing here imports boto3 or the stores (botocore only when a request is signed).
"""
