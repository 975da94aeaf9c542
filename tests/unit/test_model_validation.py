"""The models refuse what cannot be stored faithfully, whoever builds them (API, SDK, engine).

Names and tags are printable, free-form JSON is finite and bounded, a state's
name agrees with its type, limit names fit one URL path segment, tags are kept
once, and every datetime field is UTC-aware (naive means UTC).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

import runtime.api_schemas
import runtime.models
import runtime.states
from runtime.jsonvalues import MAX_JSON_DEPTH, JsonValueError, check_json_value, loads_checked
from runtime.models import (
    ConcurrencyLimitCreate,
    DeploymentCreate,
    DeploymentFlowRunCreate,
    DeploymentUpdate,
    FlowRun,
    FlowRunCreate,
    TaskRun,
    TaskRunCreate,
    WorkPoolCreate,
)
from runtime.names import check_printable, dedupe
from runtime.states import (
    STATE_NAMES,
    Completed,
    Scheduled,
    State,
    StateDetails,
    StateType,
)
from runtime.stores.dynamo import iso

BAD_TEXT = ["\x1b[31mred", "nul\x00", "bell\x07", "\u202eevil", "zero\u200bwidth", "a\nb", "\x85"]


def messages(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.value.errors()
    )


# ----------------------------------------------------------------------------- printable


@pytest.mark.parametrize("bad", BAD_TEXT)
def test_check_printable_refuses_control_and_format_characters(bad: str) -> None:
    with pytest.raises(ValueError, match=r"control or format character U\+[0-9A-F]{4}"):
        check_printable(bad)


@pytest.mark.parametrize("good", ["etl", "données été", "数据-1", "rocket 🚀", "a b", "a\u00a0b"])
def test_check_printable_keeps_printable_unicode(good: str) -> None:
    assert check_printable(good) == good


NAMED_FIELDS: list[tuple[type[BaseModel], dict[str, Any], str]] = [
    (FlowRunCreate, {"flow_name": "f"}, "name"),
    (FlowRunCreate, {}, "flow_name"),
    (FlowRunCreate, {"flow_name": "f"}, "work_pool_name"),
    (FlowRunCreate, {"flow_name": "f"}, "work_queue_name"),
    (TaskRunCreate, {}, "task_key"),
    (TaskRunCreate, {"task_key": "t"}, "name"),
    (DeploymentCreate, {"flow_name": "f"}, "name"),
    (DeploymentCreate, {"name": "d"}, "flow_name"),
    (DeploymentFlowRunCreate, {}, "name"),
    (DeploymentUpdate, {}, "work_queue_name"),
    (WorkPoolCreate, {}, "name"),
    (ConcurrencyLimitCreate, {"limit": 1}, "name"),
    (FlowRun, {"id": "i", "flow_name": "f"}, "name"),
    (FlowRun, {"id": "i", "name": "n"}, "flow_name"),
    (TaskRun, {"id": "i", "task_key": "t"}, "name"),
    (TaskRun, {"id": "i", "name": "n"}, "task_key"),
    (State, {"type": "COMPLETED"}, "name"),
]


@pytest.mark.parametrize(("model", "given", "field"), NAMED_FIELDS)
@pytest.mark.parametrize("bad", ["x\x1b[2Jx", "x\u202ex"])
def test_every_name_refuses_control_characters(
    model: type[BaseModel], given: dict[str, Any], field: str, bad: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        model(**given, **{field: bad})
    assert messages(exc).startswith(f"{field}:")


TAGGED: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (FlowRunCreate, {"flow_name": "f"}),
    (TaskRunCreate, {"task_key": "t"}),
    (DeploymentCreate, {"name": "d", "flow_name": "f"}),
    (DeploymentUpdate, {}),
    (DeploymentFlowRunCreate, {}),
    (FlowRun, {"id": "i", "name": "n", "flow_name": "f"}),
    (TaskRun, {"id": "i", "name": "n", "task_key": "t"}),
]


@pytest.mark.parametrize(("model", "given"), TAGGED)
def test_every_tag_list_refuses_control_characters_and_keeps_each_tag_once(
    model: type[BaseModel], given: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError) as exc:
        model(**given, tags=["ok", "\x1b]8;;http://x\x07"])
    assert messages(exc).startswith("tags.1:")
    assert model(**given, tags=["b", "a", "b", "a", "c"]).tags == ["b", "a", "c"]  # type: ignore[attr-defined]


def test_dedupe_keeps_first_occurrences_in_order() -> None:
    assert dedupe(["x", "y", "x", "z", "y"]) == ["x", "y", "z"]
    assert dedupe([]) == []


# ----------------------------------------------------------------------------- limit names


@pytest.mark.parametrize("name", ["tag:a/b", "a?b", "a#b", "a b", 'a"b', "a\\b", "a`b"])
def test_a_limit_name_must_fit_one_path_segment(name: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ConcurrencyLimitCreate(name=name, limit=1)
    assert messages(exc).startswith("name:") and "URL path segment" in messages(exc)


@pytest.mark.parametrize("name", ["tag:db", "tag:a.b-c_d", "tag:x@y,z;w=1+2&$", "tag:ünï"])
def test_ordinary_limit_names_are_accepted(name: str) -> None:
    assert ConcurrencyLimitCreate(name=name, limit=1).name == name


# ----------------------------------------------------------------------------- JSON values


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    ("model", "given", "field"),
    [
        (FlowRunCreate, {"flow_name": "f"}, "parameters"),
        (FlowRunCreate, {"flow_name": "f"}, "job_variables"),
        (DeploymentCreate, {"name": "d", "flow_name": "f"}, "parameters"),
        (DeploymentUpdate, {}, "parameters"),
        (DeploymentFlowRunCreate, {}, "parameters"),
        (WorkPoolCreate, {"name": "p"}, "base_job_template"),
    ],
)
def test_non_finite_numbers_in_free_form_json_are_refused(
    model: type[BaseModel], given: dict[str, Any], field: str, number: float
) -> None:
    with pytest.raises(ValidationError) as exc:
        model(**given, **{field: {"a": {"b": [1, number]}}})
    text = messages(exc)
    assert text.startswith(f"{field}:") and f"(at {field}.a.b.1)" in text
    assert "not a JSON number" in text


def test_free_form_json_deeper_than_the_limit_is_refused() -> None:
    deep: Any = []  # with parameters itself: MAX_JSON_DEPTH + 1 levels
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = [deep]
    with pytest.raises(ValidationError, match="nested deeper than 64 levels"):
        FlowRunCreate(flow_name="f", parameters={"x": deep})
    ok = FlowRunCreate(flow_name="f", parameters={"x": deep[0]})
    assert FlowRunCreate.model_validate_json(ok.model_dump_json()) == ok


def test_a_run_with_a_non_finite_run_time_is_refused() -> None:
    with pytest.raises(ValidationError):
        TaskRun(id="i", name="n", task_key="t", total_run_time=float("nan"))


def test_loads_checked_never_overflows_the_stack() -> None:
    with pytest.raises(JsonValueError, match="nested deeper than 64 levels"):
        loads_checked("[" * 200_000 + "]" * 200_000)
    with pytest.raises(JsonValueError, match="invalid JSON"):
        loads_checked('{"a": ')
    with pytest.raises(JsonValueError) as exc:
        loads_checked('{"a": [0, 1e999999]}')
    assert exc.value.path == ("a", 1) and "Infinity" in exc.value.reason
    assert loads_checked('{"a": [1.5, 2, null]}') == {"a": [1.5, 2, None]}


def test_check_json_value_reports_the_path() -> None:
    with pytest.raises(JsonValueError) as exc:
        check_json_value({"p": {"q": [0, 0, float("nan")]}})
    assert exc.value.path == ("p", "q", 2) and exc.value.reason.startswith("NaN")


# ----------------------------------------------------------------------------- state names


@pytest.mark.parametrize(
    ("type_", "name"),
    [
        ("COMPLETED", "Running"),
        ("RUNNING", "Cached"),
        ("FAILED", "completed"),
        ("SCHEDULED", "CANCELLED"),
        ("PENDING", "Crashed"),
        ("CANCELLING", "Cancelled"),
        ("PAUSED", "Late"),
    ],
)
def test_a_state_name_of_another_type_is_refused(type_: str, name: str) -> None:
    with pytest.raises(ValidationError, match=r"is the name of a [A-Z]+ state"):
        State(type=type_, name=name)


def test_custom_and_matching_state_names_are_accepted() -> None:
    assert State(type="COMPLETED", name="Skipped").name == "Skipped"
    assert State(type="FAILED", name="Upstream failure").type is StateType.FAILED
    for name, type_ in STATE_NAMES.items():
        assert State(type=type_, name=name).name == name
    for constructor in vars(runtime.states).values():
        if inspect.isfunction(constructor) and constructor.__name__ in STATE_NAMES:
            state = constructor()
            assert STATE_NAMES[state.name] is state.type


# ----------------------------------------------------------------------------- datetimes


def _datetime_fields() -> Iterator[tuple[str, Any]]:
    """Every (model.field, type adapter) whose type involves a datetime, in the model modules."""
    modules = (runtime.models, runtime.states, runtime.api_schemas)
    for module in modules:
        for model in vars(module).values():
            if not (inspect.isclass(model) and issubclass(model, BaseModel)):
                continue
            if model.__module__ != module.__name__ or model.__pydantic_generic_metadata__["args"]:
                continue
            for name, info in model.model_fields.items():
                if "datetime" in repr(info.annotation):
                    annotated = (
                        Annotated[info.annotation, *info.metadata]  # type: ignore[valid-type]
                        if info.metadata
                        else info.annotation
                    )
                    yield f"{model.__name__}.{name}", TypeAdapter(annotated)


DATETIME_FIELDS = dict(_datetime_fields())


def test_the_model_modules_have_datetime_fields() -> None:
    assert len(DATETIME_FIELDS) >= 25, sorted(DATETIME_FIELDS)


@pytest.mark.parametrize("field", sorted(DATETIME_FIELDS))
def test_every_datetime_field_is_utc_aware(field: str) -> None:
    adapter = DATETIME_FIELDS[field]
    naive = datetime(2026, 1, 2, 3, 4, 5, 6)
    assert adapter.validate_python(naive) == naive.replace(tzinfo=UTC)
    assert adapter.validate_python(naive).tzinfo is UTC
    assert adapter.validate_python("2026-01-02T03:04:05.000006") == naive.replace(tzinfo=UTC)
    plus2 = datetime(2026, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    converted = adapter.validate_python(plus2)
    assert converted.tzinfo is UTC and converted == plus2 and converted.hour == 3


@pytest.fixture
def tokyo_local_time() -> Iterator[None]:
    """The process's local time zone is Asia/Tokyo (UTC+9) for the test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "Asia/Tokyo")
        time.tzset()
        try:
            yield
        finally:
            mp.undo()
            time.tzset()


@pytest.mark.usefixtures("tokyo_local_time")
def test_a_naive_time_is_stored_as_utc_whatever_the_local_zone() -> None:
    naive = datetime(2026, 6, 1, 12, 0, 0)
    run = FlowRun(id="i", name="n", flow_name="f", expected_start_time=naive)
    assert run.expected_start_time is not None
    assert iso(run.expected_start_time) == "2026-06-01T12:00:00.000000+00:00"
    state = Scheduled(scheduled_time=naive)
    assert state.details.scheduled_time == naive.replace(tzinfo=UTC)
    assert StateDetails(cache_expiration=naive).cache_expiration == naive.replace(tzinfo=UTC)


def test_states_made_by_constructors_compare_with_the_clock() -> None:
    naive_future = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    state = Scheduled(scheduled_time=naive_future)
    assert state.details.scheduled_time is not None
    assert state.details.scheduled_time > datetime.now(UTC)
    assert Completed().timestamp.tzinfo is UTC
