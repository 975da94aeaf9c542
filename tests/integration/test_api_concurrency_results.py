"""Concurrency limits, leases, results and the task cache over real HTTP.

Every request goes to the local API Gateway (``api`` fixture), whose handlers
talk HTTP to the session's locked moto server. Every error response is checked
for the one error shape and for never being a 5xx.
"""

from __future__ import annotations

import base64
import json
import pickle
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.payload_auth import PayloadAuthenticationError, PayloadKey
from runtime.states import ResultRef
from runtime.stores import Stores
from tests.conftest import Backend
from tests.integration.http_calls import call


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ============================================================================ limits


def test_limit_crud(api: str) -> None:
    status, created = call(api, "POST", "/concurrency_limits", {"name": "tag:db", "limit": 3})
    assert status == 201
    assert (created["name"], created["limit"], created["active_slots"]) == ("tag:db", 3, 0)
    status, err = call(api, "POST", "/concurrency_limits", {"name": "tag:db", "limit": 1})
    assert status == 409 and err["error"]["type"] == "already_exists"
    call(api, "POST", "/concurrency_limits", {"name": "pool:a", "limit": 1})

    status, page = call(api, "GET", "/concurrency_limits")
    assert status == 200
    assert [lim["name"] for lim in page["items"]] == ["pool:a", "tag:db"]
    assert page["next_cursor"] is None
    assert call(api, "GET", f"/concurrency_limits/{q('tag:db')}")[1]["limit"] == 3

    status, resized = call(api, "PATCH", f"/concurrency_limits/{q('tag:db')}", {"limit": 5})
    assert status == 200 and resized["limit"] == 5
    status, err = call(api, "PATCH", f"/concurrency_limits/{q('tag:db')}", {"limit": -1})
    assert status == 422 and "body.limit" in err["error"]["message"]
    status, err = call(api, "PATCH", "/concurrency_limits/nope", {"limit": 2})
    assert status == 404 and err["error"]["type"] == "not_found"

    assert call(api, "DELETE", f"/concurrency_limits/{q('tag:db')}") == (204, None)
    assert call(api, "GET", f"/concurrency_limits/{q('tag:db')}")[0] == 404
    assert call(api, "DELETE", f"/concurrency_limits/{q('tag:db')}")[0] == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": 1}, "body.name"),
        ({"name": "x"}, "body.limit"),
        ({"name": "has space", "limit": 1}, "body.name"),
        ({"name": "a#b", "limit": 1}, "body.name"),
        ({"name": "x", "limit": -1}, "body.limit"),
        ({"name": "x", "limit": "lots"}, "body.limit"),
        ({"name": "x", "limit": 1, "slot_decay_per_second": -1}, "body.slot_decay_per_second"),
    ],
)
def test_bad_limit_is_422(api: str, body: dict[str, Any], field: str) -> None:
    status, err = call(api, "POST", "/concurrency_limits", body)
    assert status == 422 and err["error"]["type"] == "validation_error"
    assert field in err["error"]["message"]
    assert call(api, "GET", "/concurrency_limits")[1]["items"] == []


# ============================================================================ leases


def test_leases_fill_then_null_then_release(api: str) -> None:
    call(api, "POST", "/concurrency_limits", {"name": "db", "limit": 2})
    call(api, "POST", "/concurrency_limits", {"name": "api", "limit": 5})
    leases = []
    for i in range(2):
        status, body = call(
            api,
            "POST",
            "/concurrency_limits/leases",
            {"names": ["db", "api"], "lease_seconds": 30, "holder": f"run-{i}"},
        )
        assert status == 200 and body["lease"] is not None
        assert body["lease"]["limit_names"] == ["api", "db"]
        assert body["lease"]["holder"] == f"run-{i}"
        leases.append(body["lease"])
    status, body = call(api, "POST", "/concurrency_limits/leases", {"names": ["db"]})
    assert (status, body) == (200, {"lease": None})
    assert call(api, "GET", "/concurrency_limits/db")[1]["active_slots"] == 2
    assert call(api, "GET", "/concurrency_limits/api")[1]["active_slots"] == 2

    status, body = call(api, "DELETE", f"/concurrency_limits/leases/{leases[0]['id']}")
    assert (status, body) == (200, {"released": True})
    assert call(api, "DELETE", f"/concurrency_limits/leases/{leases[0]['id']}")[1] == {
        "released": False
    }
    assert call(api, "GET", "/concurrency_limits/db")[1]["active_slots"] == 1
    status, body = call(api, "POST", "/concurrency_limits/leases", {"names": ["db"]})
    assert status == 200 and body["lease"] is not None


def test_limit_zero_or_too_many_slots_is_429(api: str) -> None:
    call(api, "POST", "/concurrency_limits", {"name": "off", "limit": 0})
    call(api, "POST", "/concurrency_limits", {"name": "two", "limit": 2})
    status, err = call(api, "POST", "/concurrency_limits/leases", {"names": ["off"]})
    assert status == 429 and err["error"]["type"] == "limit_exceeded"
    assert err["error"]["details"]["name"] == "off"
    status, err = call(api, "POST", "/concurrency_limits/leases", {"names": ["two"], "slots": 3})
    assert status == 429 and err["error"]["type"] == "limit_exceeded"
    assert call(api, "GET", "/concurrency_limits/two")[1]["active_slots"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.names"),
        ({"names": []}, "body.names"),
        ({"names": ["x"], "slots": 0}, "body.slots"),
        ({"names": ["x"], "lease_seconds": 0}, "body.lease_seconds"),
        ({"names": ["x"], "lease_seconds": "soon"}, "body.lease_seconds"),
        ({"names": "x"}, "body.names"),
    ],
)
def test_bad_lease_request_is_422(api: str, body: dict[str, Any], field: str) -> None:
    status, err = call(api, "POST", "/concurrency_limits/leases", body)
    assert status == 422 and field in err["error"]["message"]


def test_lease_on_unknown_limit_is_404(api: str) -> None:
    status, err = call(api, "POST", "/concurrency_limits/leases", {"names": ["ghost"]})
    assert status == 404 and err["error"]["type"] == "not_found"


def test_renew_and_release(api: str, stores: Stores) -> None:
    call(api, "POST", "/concurrency_limits", {"name": "w", "limit": 1})
    _, body = call(api, "POST", "/concurrency_limits/leases", {"names": ["w"], "lease_seconds": 5})
    lease = body["lease"]
    path = f"/concurrency_limits/leases/{lease['id']}"
    status, renewed = call(api, "POST", f"{path}/renew", {"lease_seconds": 600})
    assert status == 200 and renewed["id"] == lease["id"]
    assert datetime.fromisoformat(renewed["expires_at"]) > datetime.fromisoformat(
        lease["expires_at"]
    ) + timedelta(seconds=500)
    status, again = call(api, "POST", f"{path}/renew")  # no body: the default 60 s
    assert status == 200 and again["expires_at"] == renewed["expires_at"]  # never shortened
    status, err = call(api, "POST", f"{path}/renew", {"lease_seconds": -1})
    assert status == 422 and "body.lease_seconds" in err["error"]["message"]

    assert call(api, "DELETE", path)[1] == {"released": True}
    status, err = call(api, "POST", f"{path}/renew", {"lease_seconds": 60})
    assert status == 404 and err["error"]["type"] == "not_found"
    assert stores.concurrency.read_limit("w").active_slots == 0
    status, err = call(api, "DELETE", "/concurrency_limits/leases/never-was")
    assert (status, err) == (200, {"released": False})


# ============================================================================ results


def s3_send(transfer: dict[str, Any], data: bytes | None = None) -> tuple[int, bytes]:
    """Send a presigned request as a client does: straight to S3, not through the API."""
    request = urllib.request.Request(
        transfer["url"], data=data, method=transfer["method"], headers=transfer["headers"]
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def upload(api: str, data: bytes, **fields: Any) -> dict[str, Any]:
    """``POST /results`` then the presigned PUT; the new result's reference."""
    status, ticket = call(api, "POST", "/results", {"size": len(data), **fields})
    assert status == 201, ticket
    assert s3_send(ticket["upload"], data)[0] == 200
    ref: dict[str, Any] = ticket["ref"]
    return ref


def download(api: str, ref: dict[str, Any]) -> bytes:
    """``POST /results/download`` then the presigned GET; the stored bytes."""
    status, ticket = call(api, "POST", "/results/download", ref)
    assert status == 200, ticket
    status, data = s3_send(ticket["download"])
    assert status == 200
    return data


def test_results_travel_through_presigned_s3_urls_at_the_configured_endpoint(
    api: str, stores: Stores, aws_backend: Backend
) -> None:
    data = json.dumps({"rows": [1, 2, 3]}).encode()
    status, ticket = call(api, "POST", "/results", {"serializer": "json", "size": len(data)})
    assert status == 201
    ref, put = ticket["ref"], ticket["upload"]
    bucket = stores.specs.results.name
    assert ref["storage_key"].startswith(f"s3://{bucket}/results/") and ref["inline"] is None
    assert ref["size"] == len(data)
    # the URL is presigned for the installation's S3 endpoint: here the moto server on loopback
    assert aws_backend.endpoint_url is not None
    assert put["url"].startswith(f"{aws_backend.endpoint_url}/{bucket}/results/")
    assert urllib.parse.urlsplit(put["url"]).hostname == "127.0.0.1"
    assert put["method"] == "PUT" and put["expires_in"] == 900
    assert put["headers"] == {
        "Content-Type": "application/json",
        "x-amz-meta-stratoflow-serializer": "json",
    }
    assert "X-Amz-Signature=" in put["url"]  # SigV4 query authentication
    assert not stores.results.exists(ref["storage_key"])  # nothing written before the PUT
    assert s3_send(put, data)[0] == 200
    assert stores.results.load_bytes(ResultRef.model_validate(ref)) == data

    status, ticket = call(api, "POST", "/results/download", ref)
    assert status == 200
    get = ticket["download"]
    assert get["method"] == "GET" and get["url"].startswith(f"{aws_backend.endpoint_url}/")
    assert s3_send(get) == (200, data)


def test_a_result_larger_than_a_lambda_payload_round_trips(api: str) -> None:
    data = bytes(range(256)) * (7 * 1024 * 1024 // 256)  # 7 MiB: more than Lambda's 6 MB
    ref = upload(api, data, serializer="pickle")
    assert ref["size"] == len(data)
    assert download(api, ref) == data


def test_a_client_chosen_id_names_the_object(api: str, stores: Stores) -> None:
    result_id = "0b7c6f1e-5a43-4c1e-9a3e-2f1d0c9b8a71"
    body = {"serializer": "json", "size": 1, "id": result_id}
    first = call(api, "POST", "/results", body)[1]["ref"]
    again = call(api, "POST", "/results", body)[1]["ref"]  # a retry: the same object
    assert first == again
    assert first["storage_key"] == f"s3://{stores.specs.results.name}/results/{result_id}"


def test_pickle_bytes_are_never_unpickled_by_the_api(api: str) -> None:
    junk = b"\x80\x05not really a pickle"  # stored and returned as they are
    assert download(api, upload(api, junk, serializer="pickle")) == junk


def test_storage_key_result_goes_to_s3(api: str, stores: Stores) -> None:
    key = PayloadKey.from_text("k" * 64)
    data = key.seal(pickle.dumps(42))  # as the engine uploads it
    ref = upload(api, data, serializer="pickle", storage_key="reports/answer.pkl")
    assert ref["storage_key"] == f"s3://{stores.specs.results.name}/results/reports/answer.pkl"
    assert stores.results.load(ResultRef.model_validate(ref), payload_key=key) == 42
    assert download(api, ref) == data


def test_a_pickle_uploaded_without_the_key_is_never_unpickled(api: str, stores: Stores) -> None:
    """Anyone may upload bytes; a pickle without the engine's MAC is refused when loaded."""
    key = PayloadKey.from_text("k" * 64)
    for storage_key in (None, "reports/forged.pkl"):
        fields: dict[str, Any] = {"serializer": "pickle"}
        if storage_key:
            fields["storage_key"] = storage_key
        ref = upload(api, pickle.dumps(42), **fields)
        with pytest.raises(PayloadAuthenticationError, match="failed authentication"):
            stores.results.load(ResultRef.model_validate(ref), payload_key=key)
        with pytest.raises(PayloadAuthenticationError, match="without the payload key"):
            stores.results.load(ResultRef.model_validate(ref))


def test_missing_s3_result_is_404(api: str, stores: Stores) -> None:
    ref = {
        "serializer": "json",
        "storage_key": f"s3://{stores.specs.results.name}/results/gone",
        "size": 3,
    }
    status, err = call(api, "POST", "/results/download", ref)
    assert status == 404 and err["error"]["type"] == "result_not_found"
    assert "results/gone" in err["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"serializer": "xml", "size": 1}, "body.serializer"),
        ({"size": 1}, "body.serializer"),
        ({"serializer": "json"}, "body.size"),
        ({"serializer": "json", "size": -1}, "body.size"),
        ({"serializer": "json", "size": 5 * 1024**3 + 1}, "body.size"),
        ({"serializer": "json", "size": "many"}, "body.size"),
        ({"serializer": "json", "size": 1, "payload": b64(b"1")}, "body.payload"),
        ({"serializer": "json", "size": 1, "id": "../x"}, "body.id"),
        ({"serializer": "json", "size": 1, "storage_key": "s3://elsewhere/k"}, "body.storage_key"),
        ({"serializer": "json", "size": 1, "storage_key": "/"}, "body.storage_key"),
    ],
)
def test_bad_result_upload_is_422(api: str, body: dict[str, Any], field: str) -> None:
    status, err = call(api, "POST", "/results", body)
    assert status == 422, err
    assert field in err["error"]["message"]


def test_an_upload_url_outside_the_results_prefix_is_refused(api: str, stores: Stores) -> None:
    bucket = stores.specs.results.name
    for key in (f"s3://{bucket}/other/x", f"s3://{bucket}/results/../other/x"):
        body = {"serializer": "json", "size": 1, "storage_key": key}
        status, err = call(api, "POST", "/results", body)
        assert status == 422 and "body.storage_key" in err["error"]["message"], err


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"serializer": "json"}, "body.storage_key"),
        ({"serializer": "yaml", "storage_key": "results/x"}, "body.serializer"),
        ({"serializer": "json", "storage_key": "s3://other-bucket/results/x"}, "body.storage_key"),
        ({"serializer": "json", "inline": "1"}, "body.inline"),
        ({"serializer": "json", "storage_key": "results/x", "extra": 1}, "body.extra"),
    ],
)
def test_bad_result_download_is_422(api: str, body: dict[str, Any], field: str) -> None:
    status, err = call(api, "POST", "/results/download", body)
    assert status == 422, err
    assert field in err["error"]["message"]


def test_a_download_outside_the_results_prefix_is_refused(api: str, stores: Stores) -> None:
    bucket = stores.specs.results.name
    stores.results.s3.put_object(Bucket=bucket, Key="other/x", Body=b"1")
    body = {"serializer": "json", "storage_key": f"s3://{bucket}/other/x"}
    status, err = call(api, "POST", "/results/download", body)
    assert status == 422 and "body.storage_key" in err["error"]["message"], err


# ============================================================================ cache


def record(key: str, task_key: str = "extract", **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "task_key": task_key,
        "result": {"serializer": "json", "inline": "42", "size": 2},
        **extra,
    }


def test_cache_lock_write_read_unlock(api: str) -> None:
    key = "abc123"
    assert call(api, "GET", f"/cache/{key}")[0] == 404
    status, body = call(api, "POST", f"/cache/{key}/lock", {"owner": "w1", "lock_seconds": 60})
    assert (status, body) == (200, {"locked": True})
    status, err = call(api, "POST", f"/cache/{key}/lock", {"owner": "w2"})
    assert status == 409 and err["error"]["type"] == "cache_key_locked"
    assert err["error"]["details"]["holder"] == "w1" and "'w1'" in err["error"]["message"]
    status, err = call(api, "GET", f"/cache/{key}")  # a pending lock is a miss
    assert status == 404 and err["error"]["type"] == "not_found"

    status, err = call(api, "PUT", f"/cache/{key}", {"record": record(key), "owner": "w2"})
    assert status == 409 and err["error"]["type"] == "conflict"
    status, written = call(api, "PUT", f"/cache/{key}", {"record": record(key), "owner": "w1"})
    assert status == 200 and written["key"] == key
    status, read = call(api, "GET", f"/cache/{key}")
    assert status == 200 and read == written
    assert read["result"]["inline"] == "42"
    # a valid record is not locked again without refresh
    assert call(api, "POST", f"/cache/{key}/lock", {"owner": "w3"})[1] == {"locked": False}
    assert call(api, "POST", f"/cache/{key}/lock", {"owner": "w3", "refresh": True})[1] == {
        "locked": True
    }
    status, body = call(api, "DELETE", f"/cache/{key}/lock?owner=w1")
    assert (status, body) == (200, {"unlocked": False})
    assert call(api, "DELETE", f"/cache/{key}/lock?owner=w3")[1] == {"unlocked": True}
    assert call(api, "GET", f"/cache/{key}")[0] == 404
    status, err = call(api, "DELETE", f"/cache/{key}/lock")
    assert status == 422 and "query.owner" in err["error"]["message"]


def test_cache_list_and_clear(api: str) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for key, task in [("k1", "t1"), ("k2", "t1"), ("k3", "t2")]:
        call(api, "POST", f"/cache/{key}/lock", {"owner": "o"})
        assert (
            call(api, "PUT", f"/cache/{key}", {"record": record(key, task), "owner": "o"})[0] == 200
        )
    call(api, "POST", "/cache/k4/lock", {"owner": "o"})
    call(api, "PUT", "/cache/k4", {"record": record("k4", "t2", expires_at=past), "owner": "o"})
    call(api, "POST", "/cache/k5/lock", {"owner": "o"})  # a lock, not a record

    status, listed = call(api, "GET", "/cache")
    assert status == 200 and sorted(r["key"] for r in listed["items"]) == ["k1", "k2", "k3"]
    assert sorted(r["key"] for r in call(api, "GET", "/cache?task_key=t1")[1]["items"]) == [
        "k1",
        "k2",
    ]
    assert len(call(api, "GET", "/cache?limit=1")[1]["items"]) == 1
    assert call(api, "GET", "/cache/k4")[0] == 404  # expired

    assert call(api, "DELETE", "/cache?key=k3")[1] == {"deleted": 1}
    assert call(api, "DELETE", "/cache?key=k3")[1] == {"deleted": 0}
    assert call(api, "DELETE", "/cache?task_key=t1")[1] == {"deleted": 2}
    assert call(api, "DELETE", "/cache")[1] == {"deleted": 2}  # k4 and the lock on k5
    assert call(api, "GET", "/cache")[1] == {"items": [], "next_cursor": None}
    status, err = call(api, "GET", "/cache?limit=0")
    assert status == 422 and "query.limit" in err["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"record": {"key": "k"}, "owner": "o"}, "body.record.result"),
        ({"record": record("k", expires_at="later"), "owner": "o"}, "body.record.expires_at"),
        ({"record": record("other"), "owner": "o"}, "body.record.key"),
        ({"record": record("k")}, "body.owner"),
        ({"record": record("k"), "owner": ""}, "body.owner"),
    ],
)
def test_bad_cache_write_is_422(api: str, body: dict[str, Any], field: str) -> None:
    call(api, "POST", "/cache/k/lock", {"owner": "o"})
    status, err = call(api, "PUT", "/cache/k", body)
    assert status == 422, err
    assert field in err["error"]["message"]
    assert call(api, "GET", "/cache/k")[0] == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.owner"),
        ({"owner": "o", "lock_seconds": 0}, "body.lock_seconds"),
        ({"owner": "o", "refresh": "sometimes"}, "body.refresh"),
    ],
)
def test_bad_cache_lock_is_422(api: str, body: dict[str, Any], field: str) -> None:
    status, err = call(api, "POST", "/cache/k/lock", body)
    assert status == 422 and field in err["error"]["message"]


def test_oversized_keys_and_records_are_422_not_500(api: str) -> None:
    long_key = "k" * 3000
    for method, path, body in [
        ("GET", f"/cache/{long_key}", None),
        ("POST", f"/cache/{long_key}/lock", {"owner": "o"}),
        ("GET", f"/concurrency_limits/{'n' * 3000}", None),
        ("POST", f"/concurrency_limits/leases/{'l' * 3000}/renew", {}),
    ]:
        status, err = call(api, method, path, body)
        assert status == 422 and "path." in err["error"]["message"], (path[:30], err)
    call(api, "POST", "/cache/big/lock", {"owner": "o"})
    huge = record("big")
    huge["result"]["inline"] = "x" * 350_000
    status, err = call(api, "PUT", "/cache/big", {"record": huge, "owner": "o"})
    assert status == 422 and "body.record" in err["error"]["message"]
