"""SigV4 signing of API requests (``runtime.http.signing.sign_request``, botocore underneath).

The expected signatures are computed here independently, with hmac and hashlib,
following the SigV4 specification (canonical request, string to sign, derived
signing key), and checked against AWS's published ``get-vanilla`` test vector.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from urllib.parse import quote, urlsplit

import pytest
from botocore.credentials import Credentials

from runtime.http.signing import is_local_url, region_from_url, sign_request
from runtime.http.transport import ApiTransport, encode_query

FROZEN = datetime(2015, 8, 30, 12, 36, 0)
AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """botocore signs at 2015-08-30T12:36:00Z (as botocore's own tests freeze its clock)."""
    import botocore.auth

    if hasattr(botocore.auth, "get_current_datetime"):
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FROZEN)
    else:  # older botocore read datetime.datetime.utcnow()

        class _Frozen(datetime):
            @classmethod
            def utcnow(cls) -> datetime:  # type: ignore[override]
                return FROZEN

        monkeypatch.setattr(botocore.auth.datetime, "datetime", _Frozen)
    return FROZEN


# ----------------------------------------------------------------------------- the spec


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_signature(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    signed: list[str],
    body: bytes,
    amz_date: str,
    secret: str,
    region: str,
    service: str,
) -> str:
    """SigV4 per the specification, written from scratch (no botocore)."""
    parts = urlsplit(url)
    # canonical URI: each segment URI-encoded twice (every service but S3)
    canonical_uri = quote(parts.path or "/", safe="/~")
    pairs = sorted(tuple(p.split("=", 1)) for p in parts.query.split("&") if p)
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    lowered = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in signed)
    canonical_request = "\n".join(
        [
            method,
            canonical_uri,
            canonical_query,
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{secret}".encode(), amz_date[:8])
    key = _hmac(key, region)
    key = _hmac(key, service)
    key = _hmac(key, "aws4_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def parse_authorization(value: str) -> dict[str, str]:
    algorithm, _, rest = value.partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    assert set(fields) == {"Credential", "SignedHeaders", "Signature"}, fields
    return fields


# ----------------------------------------------------------------------------- tests


def test_aws_get_vanilla_vector(frozen_clock: datetime) -> None:
    """AWS's SigV4 test suite, get-vanilla: GET / on example.amazonaws.com."""
    headers = sign_request(
        "GET",
        "https://example.amazonaws.com/",
        None,
        {},
        credentials=Credentials(AKID, SECRET),
        region="us-east-1",
        service="service",
    )
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_post_to_execute_api_with_fixed_time(frozen_clock: datetime) -> None:
    """A JSON POST with a query, a session token and an encoded path, at a frozen time."""
    body = json.dumps({"state": {"type": "RUNNING", "name": "Running"}, "force": False}).encode()
    url = (
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/concurrency_limits/"
        + quote("tag:db", safe="-_.~")
        + "?"
        + encode_query({"tag": ["b", "a b"], "limit": 5})
    )
    sent = {"Accept": "application/json", "Content-Type": "application/json"}
    headers = sign_request(
        "POST",
        url,
        body,
        sent,
        credentials=Credentials(AKID, SECRET, "session-token"),
        region="eu-west-1",
    )
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["X-Amz-Security-Token"] == "session-token"
    assert headers["Content-Type"] == "application/json"
    signed = ["accept", "content-type", "host", "x-amz-date", "x-amz-security-token"]
    signature = expected_signature(
        method="POST",
        url=url,
        headers={**headers, "Host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        signed=signed,
        body=body,
        amz_date="20150830T123600Z",
        secret=SECRET,
        region="eu-west-1",
        service="execute-api",
    )
    assert headers["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={AKID}/20150830/eu-west-1/execute-api/aws4_request, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )


def test_signature_verifies_when_recomputed() -> None:
    """Sign at the real time, then verify as API Gateway would: recompute from the request."""
    body = b'{"names": ["tag:db"], "slots": 1}'
    url = "https://api.example.com/v1/concurrency_limits/leases?holder=" + quote(
        "run 1/2", safe="-_.~"
    )
    headers = sign_request(
        "POST",
        url,
        body,
        {"Content-Type": "application/json"},
        credentials=Credentials("AKIDVERIFY", "secret/key+x"),
        region="us-west-2",
    )
    fields = parse_authorization(headers["Authorization"])
    akid, date, region, service, terminal = fields["Credential"].split("/")
    assert (akid, region, service, terminal) == (
        "AKIDVERIFY",
        "us-west-2",
        "execute-api",
        "aws4_request",
    )
    amz_date = headers["X-Amz-Date"]
    assert amz_date.startswith(date)
    signed = fields["SignedHeaders"].split(";")
    assert signed == sorted(signed) and {"host", "x-amz-date", "content-type"} <= set(signed)
    as_received = {**headers, "Host": "api.example.com"}

    def verify(received_body: bytes, secret: str = "secret/key+x") -> bool:
        expected = expected_signature(
            method="POST",
            url=url,
            headers=as_received,
            signed=signed,
            body=received_body,
            amz_date=amz_date,
            secret=secret,
            region=region,
            service=service,
        )
        return hmac.compare_digest(expected, fields["Signature"])

    assert verify(body)
    assert not verify(body + b" ")  # a tampered body fails
    assert not verify(body, secret="wrong")  # so does another key


def test_transport_signs_each_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing is on by default for a remote URL, off for loopback or with a token."""
    remote = ApiTransport(
        "https://abc.execute-api.ap-south-1.amazonaws.com/prod",
        credentials=Credentials("AK", "SK"),
    )
    assert remote.sign and remote.region == "ap-south-1"
    headers = remote._headers("GET", remote.url("/health"), None, None)
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AK/")
    assert "/ap-south-1/execute-api/aws4_request" in headers["Authorization"]

    monkeypatch.delenv("STRATOFLOW_API_TOKEN", raising=False)
    local = ApiTransport("http://127.0.0.1:4200")
    assert not local.sign
    assert "Authorization" not in local._headers("GET", local.url("/health"), None, None)

    token = ApiTransport("https://api.example.com", token="s3cret")
    assert not token.sign
    assert token._headers("GET", token.url("/x"), None, None)["Authorization"] == "Bearer s3cret"
    with pytest.raises(ValueError, match="not both"):
        ApiTransport("https://api.example.com", token="s3cret", sign=True)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:4200", True),
        ("http://localhost:4200/x", True),
        ("http://[::1]:4200", True),
        ("http://127.0.0.2", True),
        ("https://abc.execute-api.us-east-1.amazonaws.com/prod", False),
        ("https://api.example.com", False),
    ],
)
def test_is_local_url(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_region_from_url() -> None:
    assert region_from_url("https://x1.execute-api.eu-central-1.amazonaws.com/prod") == (
        "eu-central-1"
    )
    assert region_from_url("https://api.example.com") is None
