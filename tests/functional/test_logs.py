"""Run logs: LogStore against DynamoDB (moto in-process), LogShipper and RunLogHandler."""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from runtime.errors import InvalidInput
from runtime.logship import LogShipper, RunLogHandler
from runtime.models import LogRecord
from runtime.resources import ResourceSpecs, provision, specs
from runtime.stores.dynamo import Dynamo, Item, encode_cursor
from runtime.stores.logs import MAX_MESSAGE_BYTES, LogStore, truncate_message
from tests.conftest import Backend

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def resources(aws_backend: Backend, prefix: str) -> ResourceSpecs:
    """The tables of this test's installation, provisioned at the test's backend."""
    return provision(specs(prefix))


@pytest.fixture
def db(resources: ResourceSpecs) -> Dynamo:
    """A serialized Dynamo (in-process moto is not atomic under threads)."""
    return Dynamo(boto3.client("dynamodb"), serialize_requests=True)


@pytest.fixture
def store(db: Dynamo, resources: ResourceSpecs) -> LogStore:
    """The log store of this test's installation."""
    return LogStore(db, resources.logs)


@pytest.fixture
def shipper(store: LogStore) -> Iterator[LogShipper]:
    """A shipper with a short interval, closed after the test."""
    s = LogShipper(store, batch_size=50, interval=0.05)
    yield s
    s.close(timeout=30)


def run_id() -> str:
    return str(uuid.uuid4())


def line(flow_run_id: str, i: int, **kwargs: Any) -> LogRecord:
    return LogRecord(
        flow_run_id=flow_run_id,
        message=f"line {i}",
        timestamp=kwargs.pop("timestamp", T0 + timedelta(seconds=i)),
        **kwargs,
    )


def read_all(store: LogStore, flow_run_id: str, **kwargs: Any) -> list[LogRecord]:
    out: list[LogRecord] = []
    cursor = None
    while True:
        page = store.read(flow_run_id, limit=1000, cursor=cursor, **kwargs)
        out.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return out


def raw_items(db: Dynamo, store: LogStore, flow_run_id: str) -> list[Item]:
    return list(
        db.query(
            store.table.name,
            key_condition="flow_run_id = :f",
            values={":f": flow_run_id},
            consistent=True,
        )
    )


# ----------------------------------------------------------------------------- LogStore


class TestWriteRead:
    def test_lines_come_back_in_time_order_whatever_the_write_order(self, store: LogStore) -> None:
        fr = run_id()
        records = [line(fr, i) for i in range(30)]
        store.write(records[15:])
        store.write(list(reversed(records[:15])))
        got = store.read(fr).items
        assert [r.message for r in got] == [f"line {i}" for i in range(30)]
        assert got[0] == records[0].model_copy(update={"id": got[0].id})
        assert store.read(fr).next_cursor is None

    def test_fields_round_trip_and_ttl_is_set(self, store: LogStore, db: Dynamo) -> None:
        fr, tr = run_id(), run_id()
        record = LogRecord(
            flow_run_id=fr, task_run_id=tr, name="my.logger", level=40, message="héllo ✓"
        )
        before = datetime.now(UTC)
        store.write([record])
        (got,) = store.read(fr).items
        (item,) = raw_items(db, store, fr)
        assert got == record.model_copy(update={"id": item["seq"].rsplit("#", 1)[1]})
        assert set(item) == {
            "flow_run_id",
            "seq",
            "task_run_id",
            "level",
            "name",
            "message",
            "timestamp",
            "expires_at",
        }
        assert item["seq"].startswith(item["timestamp"] + "#")
        assert len(item["seq"].rsplit("#", 1)[1]) == 8
        expected = (before + timedelta(days=30)).timestamp()
        assert expected - 5 <= item["expires_at"] <= expected + 5

    def test_same_timestamp_never_collides_and_keeps_write_order(self, store: LogStore) -> None:
        fr = run_id()
        store.write([line(fr, i, timestamp=T0) for i in range(60)])
        store.write([line(fr, i, timestamp=T0) for i in range(60, 70)])
        got = store.read(fr).items
        assert [r.message for r in got] == [f"line {i}" for i in range(70)]

    def test_a_repeated_write_with_client_ids_stores_each_line_once(self, store: LogStore) -> None:
        fr = run_id()
        records = [line(fr, i, id=f"client-{i}") for i in range(30)]
        store.write(records)
        store.write(records)  # a retry after a lost response
        store.write(records[5:7])
        got = read_all(store, fr)
        assert [r.message for r in got] == [f"line {i}" for i in range(30)]
        assert got == records  # the ids come back as sent

    def test_a_line_without_an_id_is_read_back_with_the_id_it_got(self, store: LogStore) -> None:
        fr = run_id()
        store.write([line(fr, 1)])
        (got,) = store.read(fr).items
        assert got.id is not None
        store.write([got])  # writing what was read back overwrites that same line
        assert store.read(fr).items == [got]

    def test_duplicate_ids_in_one_batch_are_refused_before_anything_is_written(
        self, store: LogStore
    ) -> None:
        fr = run_id()
        batch = [line(fr, 0, id="a"), line(fr, 1, id="b"), line(fr, 2, id="a", timestamp=T0)]
        with pytest.raises(InvalidInput) as info:
            store.write(batch)
        assert info.value.details["field"] == "records[2].id"
        assert "'a'" in str(info.value) and "records[0]" in str(info.value)
        assert store.read(fr).items == []
        store.write([line(fr, 0, id="a"), line(fr, 1, id="a")])  # other timestamps: two lines
        assert [r.id for r in store.read(fr).items] == ["a", "a"]

    @pytest.mark.parametrize("bad", ["", "a#b", "x" * 65, "naïve", "a b"])
    def test_a_malformed_id_is_refused_by_the_model(self, bad: str) -> None:
        with pytest.raises(ValueError, match="id"):
            LogRecord(flow_run_id=run_id(), message="x", id=bad)

    def test_runs_do_not_see_each_others_lines(self, store: LogStore) -> None:
        a, b = run_id(), run_id()
        store.write([line(a, 1), line(b, 2)])
        assert [r.message for r in store.read(a).items] == ["line 1"]
        assert [r.message for r in store.read(b).items] == ["line 2"]
        assert store.read(run_id()).items == []

    def test_write_nothing_is_a_no_op(self, store: LogStore) -> None:
        store.write([])

    def test_empty_flow_run_id_is_rejected_before_anything_is_written(
        self, store: LogStore
    ) -> None:
        fr = run_id()
        with pytest.raises(InvalidInput) as info:
            store.write([line(fr, 1), LogRecord(flow_run_id="", message="x")])
        assert info.value.details["field"] == "flow_run_id"
        assert store.read(fr).items == []

    def test_expired_lines_are_not_read(self, store: LogStore) -> None:
        fr = run_id()
        old = store.to_items([line(fr, 1)], now=datetime.now(UTC) - timedelta(days=31))
        store.write_items(old)
        store.write([line(fr, 2)])
        assert [r.message for r in store.read(fr).items] == ["line 2"]

    def test_retention_must_be_positive(self, db: Dynamo, resources: ResourceSpecs) -> None:
        with pytest.raises(InvalidInput) as info:
            LogStore(db, resources.logs, retention_days=0)
        assert info.value.details["field"] == "retention_days"


class TestFilters:
    def test_task_filter(self, store: LogStore) -> None:
        fr, t1, t2 = run_id(), run_id(), run_id()
        records = [line(fr, i, task_run_id=(t1, t2, None)[i % 3]) for i in range(30)]
        store.write(records)
        got = store.read(fr, task_run_id=t1).items
        assert [r.message for r in got] == [f"line {i}" for i in range(0, 30, 3)]
        assert all(r.task_run_id == t1 for r in got)
        assert len(store.read(fr).items) == 30

    def test_level_filter(self, store: LogStore) -> None:
        fr = run_id()
        levels = [10, 20, 30, 40, 50]
        store.write([line(fr, i, level=levels[i % 5]) for i in range(25)])
        got = store.read(fr, level_ge=logging.WARNING).items
        assert [r.level for r in got] == [30, 40, 50] * 5
        assert [r.message for r in got] == [f"line {i}" for i in range(25) if i % 5 >= 2]
        assert len(store.read(fr, level_ge=0).items) == 25
        assert store.read(fr, level_ge=60).items == []

    def test_filters_combine_and_paginate(self, store: LogStore) -> None:
        fr, task = run_id(), run_id()
        records = [
            line(fr, i, task_run_id=task if i % 2 else None, level=40 if i % 4 == 1 else 20)
            for i in range(200)
        ]
        store.write(records)
        expected = [f"line {i}" for i in range(200) if i % 4 == 1]
        got: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = store.read(fr, task_run_id=task, level_ge=30, limit=7, cursor=cursor)
            got += [r.message for r in page.items]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert got == expected
        assert pages == -(-len(expected) // 7)


class TestPagination:
    def test_250_lines_in_pages_with_cursors(self, store: LogStore) -> None:
        fr = run_id()
        store.write([line(fr, i) for i in range(250)])
        pages = []
        cursor = None
        while True:
            page = store.read(fr, limit=100, cursor=cursor)
            pages.append([r.message for r in page.items])
            cursor = page.next_cursor
            if cursor is None:
                break
        assert [len(p) for p in pages] == [100, 100, 50]
        assert [m for p in pages for m in p] == [f"line {i}" for i in range(250)]

    def test_exact_multiple_has_no_empty_last_page(self, store: LogStore) -> None:
        fr = run_id()
        store.write([line(fr, i) for i in range(20)])
        first = store.read(fr, limit=10)
        assert first.next_cursor is not None
        second = store.read(fr, limit=10, cursor=first.next_cursor)
        assert [r.message for r in second.items] == [f"line {i}" for i in range(10, 20)]
        assert second.next_cursor is None

    @pytest.mark.parametrize("limit", [0, -1, 1001])
    def test_limit_out_of_range_names_the_field(self, store: LogStore, limit: int) -> None:
        with pytest.raises(InvalidInput) as info:
            store.read(run_id(), limit=limit)
        assert info.value.details["field"] == "limit"

    def test_limits_at_the_bounds_are_accepted(self, store: LogStore) -> None:
        fr = run_id()
        store.write([line(fr, i) for i in range(3)])
        assert len(store.read(fr, limit=1).items) == 1
        assert len(store.read(fr, limit=1000).items) == 3

    @pytest.mark.parametrize(
        "cursor",
        [
            "not a cursor!",
            encode_cursor({"flow_run_id": "another-run", "seq": "x"}),
            encode_cursor({"id": "x"}),
        ],
    )
    def test_bad_cursor_names_the_field(self, store: LogStore, cursor: str) -> None:
        with pytest.raises(InvalidInput) as info:
            store.read(run_id(), cursor=cursor)
        assert info.value.details["field"] == "cursor"


class TestTruncation:
    def test_huge_message_is_truncated_with_a_marker(self, store: LogStore) -> None:
        fr = run_id()
        huge = "x" * 300_000
        store.write([LogRecord(flow_run_id=fr, message=huge, timestamp=T0), line(fr, 2)])
        got = store.read(fr).items
        message = got[0].message
        assert len(message.encode()) <= MAX_MESSAGE_BYTES
        assert message.startswith("x" * 60_000)
        assert message.endswith("[truncated by stratoflow: message was 300000 bytes]")
        assert got[1].message == "line 2"

    def test_multibyte_text_is_cut_on_a_character_boundary(self) -> None:
        text = "é✓😀" * 20_000
        out = truncate_message(text)
        assert len(out.encode()) <= MAX_MESSAGE_BYTES
        body = out.split("\n...[truncated")[0]
        assert text.startswith(body)

    def test_small_messages_are_unchanged(self) -> None:
        text = "a" * MAX_MESSAGE_BYTES
        assert truncate_message(text) is text

    def test_lone_surrogates_are_replaced(self, store: LogStore) -> None:
        fr = run_id()
        store.write([LogRecord(flow_run_id=fr, message="bad \udcff byte")])
        assert store.read(fr).items[0].message == "bad ? byte"


# ----------------------------------------------------------------------------- shipping


class TestShipper:
    def test_flush_makes_everything_durable(self, store: LogStore) -> None:
        shipper = LogShipper(store, batch_size=1000, interval=3600)
        try:
            fr = run_id()
            for i in range(137):
                shipper.emit(line(fr, i))
            assert shipper.flush(timeout=30) is True
            got = store.read(fr, limit=1000).items
            assert [r.message for r in got] == [f"line {i}" for i in range(137)]
            assert shipper.written == 137
        finally:
            shipper.close()

    def test_interval_ships_without_flush(self, store: LogStore) -> None:
        shipper = LogShipper(store, batch_size=1000, interval=0.05)
        try:
            fr = run_id()
            shipper.emit(line(fr, 1))
            deadline = datetime.now(UTC) + timedelta(seconds=10)
            while not store.read(fr).items and datetime.now(UTC) < deadline:
                threading.Event().wait(0.02)
            assert [r.message for r in store.read(fr).items] == ["line 1"]
        finally:
            shipper.close()

    def test_close_flushes_and_later_emits_are_reported(self, store: LogStore) -> None:
        stream = io.StringIO()
        shipper = LogShipper(store, batch_size=1000, interval=3600, stream=stream)
        fr = run_id()
        shipper.emit(line(fr, 1))
        assert shipper.close(timeout=30) is True
        assert shipper.closed
        assert [r.message for r in store.read(fr).items] == ["line 1"]
        shipper.emit(line(fr, 2))
        assert "after the shipper closed" in stream.getvalue()
        assert shipper.dropped == 1
        assert shipper.close() is False  # idempotent; line 2 (emitted before it) was lost

    def test_8_threads_x_100_lines_all_stored_in_order_per_thread(self, store: LogStore) -> None:
        shipper = LogShipper(store, batch_size=100, interval=0.05)
        fr = run_id()
        start = threading.Barrier(8)

        def produce(t: int) -> None:
            start.wait()
            for i in range(100):
                shipper.emit(LogRecord(flow_run_id=fr, task_run_id=f"t{t}", message=f"{t}:{i}"))

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        try:
            assert shipper.flush(timeout=60) is True
        finally:
            shipper.close()
        got = read_all(store, fr)
        assert len(got) == 800
        assert [r.timestamp for r in got] == sorted(r.timestamp for r in got)
        for t in range(8):
            mine = [r.message for r in got if r.task_run_id == f"t{t}"]
            assert mine == [f"{t}:{i}" for i in range(100)]

    def test_failing_writes_are_retried(self, store: LogStore) -> None:
        calls = {"n": 0}
        real = store.write_items

        def flaky(items: list[Item]) -> None:
            calls["n"] += 1
            if calls["n"] <= 2:
                raise RuntimeError("throttled")
            real(items)

        store.write_items = flaky  # type: ignore[method-assign]
        stream = io.StringIO()
        shipper = LogShipper(store, interval=3600, backoff=0.01, stream=stream)
        try:
            fr = run_id()
            for i in range(10):
                shipper.emit(line(fr, i))
            assert shipper.flush(timeout=30) is True
        finally:
            shipper.close()
        assert calls["n"] == 3
        assert len(store.read(fr).items) == 10  # the retries wrote no duplicates
        assert stream.getvalue() == ""

    def test_a_sink_retried_after_a_lost_response_stores_each_line_once(
        self, store: LogStore
    ) -> None:
        """A sink (e.g. ``POST /logs``) that stored the batch but lost its answer is retried."""

        class LostResponse:
            def __init__(self) -> None:
                self.calls = 0

            def write(self, records: list[LogRecord]) -> None:
                self.calls += 1
                store.write(records)
                if self.calls == 1:
                    raise ConnectionResetError("the response was lost")

        sink = LostResponse()
        stream = io.StringIO()
        shipper = LogShipper(sink, interval=3600, backoff=0.01, stream=stream)
        fr = run_id()
        try:
            for i in range(10):
                shipper.emit(line(fr, i, timestamp=T0))
            assert shipper.flush(timeout=30) is True
        finally:
            shipper.close()
        assert sink.calls == 2
        assert [r.message for r in read_all(store, fr)] == [f"line {i}" for i in range(10)]
        assert stream.getvalue() == ""

    def test_a_write_that_keeps_failing_is_reported_not_raised(self, store: LogStore) -> None:
        def broken(items: list[Item]) -> None:
            raise RuntimeError("table is gone")

        store.write_items = broken  # type: ignore[method-assign]
        stream = io.StringIO()
        shipper = LogShipper(store, interval=3600, max_attempts=3, backoff=0.01, stream=stream)
        fr = run_id()
        try:
            for i in range(5):
                shipper.emit(line(fr, i))
            assert shipper.flush(timeout=30) is False
        finally:
            shipper.close()
        report = stream.getvalue()
        assert f"dropped 5 log line(s) of flow run(s) {fr}" in report
        assert "after 3 failed write attempt(s)" in report
        assert "table is gone" in report
        assert shipper.dropped == 5

    def test_a_bad_line_does_not_take_its_batch_down(self, store: LogStore) -> None:
        stream = io.StringIO()
        shipper = LogShipper(store, interval=3600, stream=stream)
        fr = run_id()
        try:
            shipper.emit(line(fr, 1))
            shipper.emit(LogRecord(flow_run_id="", message="nowhere"))
            shipper.emit(line(fr, 3))
            assert shipper.flush(timeout=30) is False
        finally:
            shipper.close()
        assert [r.message for r in store.read(fr).items] == ["line 1", "line 3"]
        assert "flow_run_id must not be empty" in stream.getvalue()

    def test_queue_overflow_is_reported(self, store: LogStore) -> None:
        gate = threading.Event()
        real = store.write_items

        def slow(items: list[Item]) -> None:
            gate.wait(30)
            real(items)

        store.write_items = slow  # type: ignore[method-assign]
        stream = io.StringIO()
        shipper = LogShipper(store, batch_size=2, interval=3600, max_pending=4, stream=stream)
        fr = run_id()
        try:
            for i in range(2):
                shipper.emit(line(fr, i))  # taken by the worker, which blocks
            deadline = datetime.now(UTC) + timedelta(seconds=10)
            while shipper._pending and datetime.now(UTC) < deadline:
                threading.Event().wait(0.01)
            for i in range(2, 9):
                shipper.emit(line(fr, i))  # 4 fit, 3 overflow
            gate.set()
            assert shipper.flush(timeout=30) is False
        finally:
            gate.set()
            shipper.close()
        assert len(store.read(fr).items) == 6
        assert "dropped 3 log line(s): more than 4 were waiting" in stream.getvalue()


class TestHandler:
    def test_logger_roundtrip_with_traceback(self, store: LogStore, shipper: LogShipper) -> None:
        fr, tr = run_id(), run_id()
        logger = logging.getLogger(f"stratoflow.test.{uuid.uuid4().hex}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        handler = RunLogHandler(shipper)
        logger.addHandler(handler)
        try:
            logger.info("starting %s", "etl", extra={"flow_run_id": fr})
            adapter = logging.LoggerAdapter(logger, {"flow_run_id": fr, "task_run_id": tr})
            adapter.debug("in the task")
            try:
                raise ValueError("boom")
            except ValueError:
                adapter.exception("task failed")
            logger.warning("no run here")  # no flow_run_id: ignored
            handler.flush()
        finally:
            logger.removeHandler(handler)
        got = store.read(fr).items
        assert [r.message.splitlines()[0] for r in got] == [
            "starting etl",
            "in the task",
            "task failed",
        ]
        assert [r.level for r in got] == [logging.INFO, logging.DEBUG, logging.ERROR]
        assert [r.task_run_id for r in got] == [None, tr, tr]
        assert {r.name for r in got} == {logger.name}
        failure = got[2].message
        assert "Traceback (most recent call last):" in failure
        assert 'raise ValueError("boom")' in failure
        assert failure.rstrip().endswith("ValueError: boom")
        assert got[0].timestamp <= got[1].timestamp <= got[2].timestamp
        assert store.read(fr, task_run_id=tr, level_ge=logging.ERROR).items == [got[2]]

    def test_handler_formatter_is_used(self, store: LogStore, shipper: LogShipper) -> None:
        fr = run_id()
        handler = RunLogHandler(shipper)
        handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
        logger = logging.getLogger(f"stratoflow.test.{uuid.uuid4().hex}")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            logger.warning("careful", extra={"flow_run_id": fr})
            shipper.flush(timeout=30)
        finally:
            logger.removeHandler(handler)
        assert [r.message for r in store.read(fr).items] == ["WARNING|careful"]

    def test_records_without_flow_run_id_are_ignored(self, shipper: LogShipper) -> None:
        handler = RunLogHandler(shipper)
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
        assert handler.to_log_record(record) is None
        handler.emit(record)
        assert shipper.flush(timeout=30) is True
        assert shipper.written == 0
