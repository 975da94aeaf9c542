"""SigV4 signing of API requests for API Gateway's IAM auth (botocore underneath).

With ``sign`` (default: on unless the URL is on 127.0.0.1/localhost or a token
is given), every attempt is SigV4-signed for ``execute-api`` with botocore's
credential chain. botocore is imported only when a request is signed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["SIGV4_SERVICE", "UNRESERVED", "is_local_url", "region_from_url", "sign_request"]

SIGV4_SERVICE = "execute-api"
"""The SigV4 service name of API Gateway."""

UNRESERVED = "-_.~"
"""RFC 3986 unreserved characters: SigV4's canonical encoding leaves only these unescaped."""

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
_EXECUTE_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


def is_local_url(url: str) -> bool:
    """True for a URL on this machine (127.0.0.0/8, ::1, localhost)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def region_from_url(url: str) -> str | None:
    """The region of an ``https://<id>.execute-api.<region>.amazonaws.com`` URL."""
    match = _EXECUTE_API_HOST.search((urlsplit(url).hostname or "").lower())
    return match.group(1) if match else None


def sign_request(
    method: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    credentials: Any,
    region: str,
    service: str = SIGV4_SERVICE,
) -> dict[str, str]:
    """``headers`` plus SigV4's (``X-Amz-Date``, ``Authorization``, maybe a session token).

    ``credentials`` has ``access_key``, ``secret_key`` and ``token`` (botocore's
    ``Credentials`` or their frozen form). The URL must already be encoded as it
    will be sent (query values percent-encoded with SigV4's unreserved set).
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method.upper(), url=url, data=body or b"", headers=dict(headers))
    SigV4Auth(credentials, service, region).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


def botocore_region() -> str:
    """The region botocore's configuration names (``us-east-1`` when none does)."""
    try:
        import botocore.session

        return str(botocore.session.Session().get_config_variable("region") or "us-east-1")
    except Exception:
        return "us-east-1"
