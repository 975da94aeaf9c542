"""The byte budgets (runtime.limits) and the pure helpers that apply them (issue 7, item 7)."""

from __future__ import annotations

import json
import uuid

from botocore.exceptions import ClientError

from handlers.errors import backend_error_response
from runtime.engine.http_engine_client import record_chunks
from runtime.errors import ItemTooLarge
from runtime.limits import (
    RECORD_BATCH_MAX_BYTES,
    RECORD_BATCH_MAX_RECORDS,
    item_size,
    truncate_text,
)
from runtime.models import TaskRun
from runtime.states import AwaitingRetry, Pending, Running, State
from runtime.stores.dynamo import item_size_error
from runtime.stores.runs import MAX_HISTORY, fit_history


def test_truncate_text_keeps_short_text_and_marks_what_it_cut() -> None:
    assert truncate_text("abc", 3) == "abc"
    cut = truncate_text("a" * 1000, 100)
    assert len(cut.encode()) <= 100
    kept = len(cut) - len(cut.lstrip("a"))
    assert cut == "a" * kept + f"... [truncated {1000 - kept} bytes]"
    wide = truncate_text("€" * 1000, 101)  # 3-byte characters are never split
    assert len(wide.encode()) <= 101 and wide.encode().decode() == wide
    assert truncate_text("\ud800x", 100) == "?x"  # a lone surrogate cannot be stored


def test_item_size_counts_names_values_and_list_overhead() -> None:
    assert item_size({"id": "abc"}) == 2 + 3
    assert item_size({"h": ["ab", "c"]}) == 1 + 3 + (1 + 2) + (1 + 1)
    assert item_size({"skip": None}) == 0
    assert item_size({"n": 12345}) > 1


def test_fit_history_keeps_the_first_and_the_latest_that_fit() -> None:
    entries = [f"{i:04d}" + "x" * 96 for i in range(50)]  # 100 bytes each, 101 in a list
    kept, dropped = fit_history(entries, 3 + 101 * 10) or ([], 0)
    assert kept[0] == entries[0] and kept[-1] == entries[-1]
    assert kept[1:] == entries[-9:]
    assert (len(kept), dropped) == (10, 40)
    assert fit_history(entries, 50) is None  # not even the latest fits
    many = ["s"] * (MAX_HISTORY + 10)
    kept, dropped = fit_history(many, 10**9) or ([], 0)
    assert (len(kept), dropped) == (MAX_HISTORY, 10)


def _record(message_bytes: int, retries: int = 1) -> tuple[TaskRun, list[State]]:
    history: list[State] = [Pending()]
    for _ in range(retries):
        history += [Running(), AwaitingRetry(message="m" * message_bytes)]
    run = TaskRun(id=str(uuid.uuid4()), name="t-0", task_key="t", state=history[-1])
    return run, history


def _json_bytes(chunk: list[tuple[TaskRun, list[State]]]) -> int:
    return sum(
        len(run.model_dump_json()) + sum(len(s.model_dump_json()) for s in history)
        for run, history in chunk
    )


def test_record_chunks_are_cut_by_bytes_and_by_count() -> None:
    small = [_record(10) for _ in range(250)]
    assert [len(c) for c in record_chunks(small)] == [RECORD_BATCH_MAX_RECORDS] * 2 + [50]
    big = [_record(16_000, retries=3) for _ in range(40)]  # ~50 KB each
    chunks = list(record_chunks(big))
    assert sum(len(c) for c in chunks) == 40 and len(chunks) > 1
    assert all(_json_bytes(c) <= RECORD_BATCH_MAX_BYTES for c in chunks)


def test_record_chunks_bound_a_huge_history() -> None:
    run, history = _record(16_000, retries=200)  # 6.4 MB of history
    ((sent_run, sent_history),) = next(record_chunks([(run, history)]))
    assert sent_run is run
    assert sent_history[0] is history[0] and sent_history[-1] is history[-1]
    assert len(json.dumps([s.model_dump(mode="json") for s in sent_history])) < 400_000


def _client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "PutItem")


def test_dynamodb_size_refusals_are_4xx_never_500() -> None:
    too_big = _client_error(
        "ValidationException", "Item size has exceeded the maximum allowed size"
    )
    mapped = item_size_error(too_big)
    assert isinstance(mapped, ItemTooLarge) and mapped.status_code == 413
    assert item_size_error(_client_error("ValidationException", "bad key")) is None
    response = backend_error_response(too_big)
    assert response is not None and response.status_code == 413
    other = backend_error_response(_client_error("ValidationException", "empty key value"))
    assert other is not None and other.status_code == 422
    assert backend_error_response(_client_error("InternalServerError", "boom")) is None
    assert backend_error_response(ValueError("x")) is None


def test_only_refusals_of_the_records_themselves_are_permanent() -> None:
    from runtime.engine.client import is_permanent
    from runtime.errors import Conflict, InvalidInput, LimitExceeded, TransactionConflict
    from runtime.http.errors import Throttled, Unauthorized

    assert is_permanent(Conflict("stale"))
    assert is_permanent(InvalidInput("bad"))
    assert is_permanent(ItemTooLarge("big"))
    assert is_permanent(_client_error("ValidationException", "bad key"))
    assert not is_permanent(TransactionConflict("race"))
    assert not is_permanent(LimitExceeded("busy"))
    assert not is_permanent(Throttled(429, "throttled", "slow down"))
    assert not is_permanent(Unauthorized(401, "unauthorized", "who?"))
    assert not is_permanent(_client_error("InternalServerError", "boom"))
    assert not is_permanent(ConnectionError("down"))
