"""Retried writes are idempotent: responses lost after the handler ran (docs/api.md).

A :class:`LosingProxy` on 127.0.0.1 sits between the client and the local gateway.
It forwards each request, lets the gateway (and so the handler) finish, then, for
the requests it is told to lose, closes the client's connection without a byte of
the response (``drop``) or keeps it open without answering until the client's read
timeout fires (``hold``). The client cannot tell whether the write happened; these
tests check that its retry does not do it twice and that a request that is not safe
to repeat is not repeated.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest

from runtime.models import ConcurrencyLimitCreate, FlowRunCreate, LogRecord
from runtime.results import RESULTS_PREFIX
from runtime.states import Running
from runtime.stores import Stores
from sdk import api_errors
from sdk.http_client import ApiTransport, StratoflowClient

Mode = Literal["drop", "hold"]


def _read_request(conn: socket.socket) -> tuple[bytes, str, str] | None:
    """One HTTP/1.1 request from ``conn``: (raw bytes, method, path), None at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for header in lines[1:]:
        name, _, value = header.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body, method, path


class LosingProxy:
    """Forwards requests to ``target``; loses the responses of the first ``lose`` matches.

    ``match(method, path)`` picks the requests whose response may be lost. Every
    request is handled on its own connection (the proxy answers ``Connection:
    close``). ``seen`` lists every (method, path) forwarded; ``lost`` counts losses.
    """

    def __init__(
        self, target: str, match: Callable[[str, str], bool], lose: int = 1, mode: Mode = "drop"
    ) -> None:
        parts = urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 80
        self.match = match
        self.to_lose = lose
        self.mode = mode
        self.seen: list[tuple[str, str]] = []
        self.lost = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            raw, method, path = request
            upstream = socket.create_connection((self.target_host, self.target_port))
            with upstream:
                upstream.sendall(raw)
                response = http.client.HTTPResponse(upstream, method=method)
                response.begin()
                body = response.read()  # the handler has run to the end
                status, reason = response.status, response.reason
                headers = [
                    (k, v)
                    for k, v in response.getheaders()
                    if k.lower() not in ("connection", "content-length", "transfer-encoding")
                ]
            with self._lock:
                self.seen.append((method, path))
                lose = self.to_lose > 0 and self.match(method, path)
                if lose:
                    self.to_lose -= 1
                    self.lost += 1
            if lose:
                if self.mode == "hold":  # never answer: the client's read timeout fires
                    conn.settimeout(0.2)
                    while not self._stop.is_set():
                        try:
                            if not conn.recv(1024):
                                return  # the client gave up and closed
                        except TimeoutError:
                            continue
                        except OSError:
                            return
                return  # "drop": close without a byte of the response
            out = [f"HTTP/1.1 {status} {reason}"]
            out += [f"{k}: {v}" for k, v in headers]
            out += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
            conn.sendall("\r\n".join(out).encode("latin-1") + body)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(5)


@pytest.fixture
def proxies(api: str) -> Iterator[Callable[..., LosingProxy]]:
    """Start losing proxies in front of this test's gateway."""
    started: list[LosingProxy] = []

    def start(match: Callable[[str, str], bool], lose: int = 1, mode: Mode = "drop") -> LosingProxy:
        proxy = LosingProxy(api, match, lose, mode)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


@pytest.fixture
def client(api: str) -> Iterator[StratoflowClient]:
    """A client talking to the gateway directly (to look at what was stored)."""
    with StratoflowClient(api) as c:
        yield c


def through(proxy: LosingProxy, **transport: Any) -> StratoflowClient:
    """A client whose requests cross ``proxy``; short backoff, no real sleeping."""
    transport.setdefault("backoff", 0.01)
    transport.setdefault("max_backoff", 0.05)
    c = StratoflowClient(transport=ApiTransport(proxy.url, **transport))
    c.transport._sleep = lambda seconds: None
    return c


def posts_to(path: str) -> Callable[[str, str], bool]:
    return lambda method, seen: method == "POST" and seen.split("?")[0] == path


# ----------------------------------------------------------------------------- leases


def test_a_lost_lease_response_holds_one_slot(
    proxies: Callable[..., LosingProxy], client: StratoflowClient, prefix: str
) -> None:
    name = f"tag:{prefix}"
    client.create_concurrency_limit(ConcurrencyLimitCreate(name=name, limit=3))
    proxy = proxies(posts_to("/concurrency_limits/leases"))
    lease = through(proxy).acquire_lease([name], lease_seconds=60, holder="me")
    assert proxy.lost == 1 and proxy.seen.count(("POST", "/concurrency_limits/leases")) == 2
    assert lease is not None
    assert client.read_concurrency_limit(name).active_slots == 1
    assert client.release_lease(lease.id) is True
    assert client.read_concurrency_limit(name).active_slots == 0


def test_a_lost_lease_response_on_a_one_slot_limit_still_gets_the_slot(
    proxies: Callable[..., LosingProxy], client: StratoflowClient, prefix: str
) -> None:
    """The retry finds the limit full (its own first attempt filled it): same lease back."""
    name = f"tag:{prefix}"
    client.create_concurrency_limit(ConcurrencyLimitCreate(name=name, limit=1))
    proxy = proxies(posts_to("/concurrency_limits/leases"))
    lease = through(proxy).acquire_lease([name], lease_seconds=60)
    assert proxy.lost == 1 and lease is not None
    assert client.read_concurrency_limit(name).active_slots == 1


def test_a_lease_read_timeout_is_retried_with_the_same_id(
    proxies: Callable[..., LosingProxy], client: StratoflowClient, prefix: str
) -> None:
    name = f"tag:{prefix}"
    client.create_concurrency_limit(ConcurrencyLimitCreate(name=name, limit=3))
    proxy = proxies(posts_to("/concurrency_limits/leases"), mode="hold")
    lease = through(proxy, timeout=3).acquire_lease([name], lease_seconds=60)
    assert proxy.lost == 1 and lease is not None
    assert client.read_concurrency_limit(name).active_slots == 1


def test_a_lease_request_with_a_malformed_id_is_a_422(api: str, prefix: str) -> None:
    with StratoflowClient(api) as c:
        c.create_concurrency_limit(ConcurrencyLimitCreate(name=f"tag:{prefix}", limit=1))
        with pytest.raises(api_errors.ValidationError) as info:
            c.acquire_lease([f"tag:{prefix}"], lease_id="not-a-uuid")
        assert info.value.field == "id"
        assert c.read_concurrency_limit(f"tag:{prefix}").active_slots == 0


# ----------------------------------------------------------------------------- logs


def test_lost_logs_responses_store_each_line_once(
    proxies: Callable[..., LosingProxy], client: StratoflowClient, prefix: str
) -> None:
    run = client.create_flow_run(FlowRunCreate(flow_name=f"flow-{prefix}"))
    t0 = datetime.now(UTC)
    records = [
        LogRecord(flow_run_id=run.id, message=f"line {i}", timestamp=t0 + timedelta(microseconds=i))
        for i in range(40)
    ]
    proxy = proxies(posts_to("/logs"), lose=2)
    assert through(proxy).write_logs(records) == 40
    assert proxy.lost == 2 and proxy.seen.count(("POST", "/logs")) == 3
    stored = list(client.paginate(client.read_logs, run.id, limit=1000))
    assert [r.message for r in stored] == [f"line {i}" for i in range(40)]


def test_a_logs_request_with_the_same_id_twice_is_a_422_and_stores_nothing(
    client: StratoflowClient, prefix: str
) -> None:
    run = client.create_flow_run(FlowRunCreate(flow_name=f"flow-{prefix}"))
    t0 = datetime.now(UTC)
    twice = [
        LogRecord(flow_run_id=run.id, message="a", timestamp=t0, id="dup"),
        LogRecord(flow_run_id=run.id, message="b", timestamp=t0, id="dup"),
    ]
    with pytest.raises(api_errors.ValidationError) as info:
        client.write_logs(twice)
    assert info.value.status == 422 and "records[1].id" in str(info.value)
    assert client.read_logs(run.id).items == []


# ----------------------------------------------------------------------------- results


def _result_objects(stores: Stores) -> set[str]:
    listed = stores.results.s3.list_objects_v2(Bucket=stores.results.bucket, Prefix=RESULTS_PREFIX)
    return {o["Key"] for o in listed.get("Contents", [])}


def test_a_lost_result_response_leaves_no_orphan_object(
    proxies: Callable[..., LosingProxy], client: StratoflowClient, stores: Stores
) -> None:
    before = _result_objects(stores)
    proxy = proxies(posts_to("/results"), lose=2)
    value = list(range(20_000))  # too large to stay inline
    ref = through(proxy).persist_result(value, serializer="pickle")
    assert proxy.lost == 2 and proxy.seen.count(("POST", "/results")) == 3
    assert ref.storage_key is not None
    added = _result_objects(stores) - before
    assert [f"s3://{stores.results.bucket}/{key}" for key in added] == [ref.storage_key]
    assert client.load_result(ref) == value


def test_a_result_with_a_malformed_id_is_a_422(api: str) -> None:
    with StratoflowClient(api) as c:
        with pytest.raises(api_errors.ValidationError) as info:
            c._call(
                "POST",
                "/results",
                json_body={"serializer": "json", "size": 1, "id": "../x"},
            )
        assert info.value.field == "id"


# ----------------------------------------------------------------------------- not idempotent


@pytest.mark.parametrize("mode", ["drop", "hold"])
def test_a_request_that_is_not_safe_to_repeat_is_not_retried_after_a_lost_response(
    proxies: Callable[..., LosingProxy], client: StratoflowClient, prefix: str, mode: Mode
) -> None:
    """``POST /flow_runs/{id}/cancel`` carries no client id: after a read timeout or a
    dropped connection the client reports it instead of sending it again."""
    run = client.create_flow_run(FlowRunCreate(flow_name=f"flow-{prefix}"))
    client.set_flow_run_state(run.id, Running())
    proxy = proxies(lambda method, path: path.endswith("/cancel"), mode=mode)
    with pytest.raises(api_errors.ApiConnectionError) as info:
        through(proxy, timeout=2).cancel_flow_run(run.id)
    assert "not retried" in str(info.value)
    assert proxy.seen == [("POST", f"/flow_runs/{run.id}/cancel")]  # sent once
    assert client.read_flow_run(run.id).state.name == "Cancelling"  # and it was applied


def test_a_request_that_never_reached_the_server_is_retried_even_if_not_idempotent(
    client: StratoflowClient, prefix: str
) -> None:
    run = client.create_flow_run(FlowRunCreate(flow_name=f"flow-{prefix}"))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = StratoflowClient(transport=ApiTransport(f"http://127.0.0.1:{port}", retries=2))
    slept: list[float] = []
    c.transport._sleep = slept.append
    with pytest.raises(api_errors.ApiConnectionError) as info:
        c.cancel_flow_run(run.id)
    assert len(slept) == 2 and "not retried" not in str(info.value)
    assert client.read_flow_run(run.id).state.name == "Pending"


def test_racing_repeats_of_one_lease_request_hold_one_slot(
    client: StratoflowClient, prefix: str
) -> None:
    """16 threads send the same acquire (one lease id) at once, through the API to the
    locked moto server: one slot is taken and every thread gets that lease."""
    name = f"tag:{prefix}"
    client.create_concurrency_limit(ConcurrencyLimitCreate(name=name, limit=5))
    lease_id = "0b6f4c1e-7d2a-4f63-9a1b-5e8c2d7f3a90"
    barrier = threading.Barrier(16)
    got: list[Any] = []

    def attempt() -> None:
        with StratoflowClient(client.api_url) as mine:
            barrier.wait()
            got.append(mine.acquire_lease([name], lease_seconds=60, lease_id=lease_id))

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 16 and {lease.id for lease in got} == {lease_id}
    assert len({lease.expires_at for lease in got}) == 1
    assert client.read_concurrency_limit(name).active_slots == 1
