"""One clear line instead of a botocore traceback when the stores cannot be used at all.

An unreachable endpoint, no region configured, missing credentials, or an
installation whose tables were never provisioned are configuration problems, not
bugs: :func:`explain_aws_error` turns the botocore exception into
:class:`AwsUnavailable`, whose message says what is wrong and how to fix it, and
the stores raise it ``from None`` (the botocore exception stays on ``.original``).
Every other error is left alone.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import StratoflowError

__all__ = ["AwsUnavailable", "explain_aws_error"]

#: What to do when nothing answers at the endpoint.
START_HINT = "start the local stack with `stratoflow dev` (or LocalStack), or fix AWS_ENDPOINT_URL"


class AwsUnavailable(StratoflowError):
    """The AWS endpoint, region, credentials or tables are not usable (503 over the API)."""

    status_code = 503
    error_type = "aws_unavailable"

    def __init__(self, message: str, original: BaseException | None = None) -> None:
        super().__init__(message)
        self.original = original


def _endpoint_of(client: Any) -> str:
    url = getattr(getattr(client, "meta", None), "endpoint_url", None)
    return str(url) if url else "AWS"


def explain_aws_error(
    exc: BaseException, *, client: Any = None, table: str | None = None
) -> AwsUnavailable | None:
    """:class:`AwsUnavailable` for a configuration problem, else None (re-raise ``exc``)."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    endpoint = _endpoint_of(client)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        url = str(getattr(exc, "kwargs", {}).get("endpoint_url") or endpoint)
        return AwsUnavailable(f"cannot reach the AWS endpoint {url}: {START_HINT}", exc)
    if isinstance(exc, NoRegionError):
        return AwsUnavailable(
            "no AWS region configured: set AWS_DEFAULT_REGION (e.g. us-east-1) "
            "or a region in ~/.aws/config",
            exc,
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AwsUnavailable(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(any value for a local endpoint), or AWS_PROFILE",
            exc,
        )
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException" and table:
            return AwsUnavailable(
                f"table {table!r} does not exist at {endpoint}: the installation is not "
                "provisioned (run `stratoflow dev`, or `stratoflow api serve --provision`, "
                "or check STRATOFLOW_PREFIX)",
                exc,
            )
    return None
