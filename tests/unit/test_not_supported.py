"""Importing a Prefect name Stratoflow lacks raises an error that says why and what instead.

Issue 9, item 9: "never a bare ``ModuleNotFoundError``". Planned features name the phase
that brings them; unsupported ones (Prefect Cloud, Prefect's server, profiles) say what to
use instead. The module list follows Prefect 3's ``src/prefect/`` tree and the names
Prefect's ``__init__.py`` exports (``serve``, ``deploy``, ``pause_flow_run``...).
"""

from __future__ import annotations

import importlib
import sys

import pytest

import sdk
from sdk import not_supported
from sdk.not_supported import MODULES, NotSupportedError, PlannedFeatureError


@pytest.mark.parametrize(
    ("statement", "phase"),
    [
        ("from sdk.schedules import Cron", "phase 6"),
        ("from sdk.blocks.system import Secret", "later phase"),
        ("from sdk.variables import Variable", "later phase"),
        ("from sdk.artifacts import create_markdown_artifact", "later phase"),
        ("from sdk.events import emit_event", "later phase"),
        ("from sdk.automations import Automation", "later phase"),
        ("from sdk.input import send_input", "later phase"),
        ("from sdk.input import receive_input", "later phase"),
    ],
)
def test_planned_features_name_their_phase(statement: str, phase: str) -> None:
    """A planned feature's import raises PlannedFeatureError naming the phase."""
    with pytest.raises(PlannedFeatureError) as caught:
        exec(statement, {})
    message = str(caught.value)
    assert "not available yet" in message and phase in message
    assert "docs/prefect-api-map.md" in message


@pytest.mark.parametrize(
    ("statement", "instead"),
    [
        ("import sdk.cloud", "STRATOFLOW_API_URL"),
        ("from sdk.client.cloud import get_cloud_client", "STRATOFLOW_API_URL"),
        ("from sdk.server.schemas.states import StateType", "stratoflow dev"),
        ("from sdk.settings import temporary_settings", "STRATOFLOW_"),
        ("from sdk.client.schemas.filters import FlowRunFilter", "read_flow_runs("),
        ("from sdk.serializers import JSONSerializer", "result_serializer='json'"),
        ("import sdk.runner", "flow.serve()"),
        ("from sdk.workers.process import ProcessWorker", "stratoflow worker start"),
        ("from sdk import deploy", "flow.deploy()"),
    ],
)
def test_unsupported_names_say_what_to_use_instead(statement: str, instead: str) -> None:
    """An unsupported name raises NotSupportedError (not PlannedFeatureError) with a way out."""
    with pytest.raises(NotSupportedError) as caught:
        exec(statement, {})
    assert not isinstance(caught.value, PlannedFeatureError)
    assert "not supported by Stratoflow" in str(caught.value)
    assert instead in str(caught.value)


def test_the_errors_are_import_errors_so_optional_imports_keep_working() -> None:
    """``try: from prefect.blocks import ... except ImportError:`` still works."""
    assert issubclass(NotSupportedError, ModuleNotFoundError)
    try:
        from sdk.blocks.core import Block  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        assert exc.name == "sdk.blocks"
    else:
        pytest.fail("sdk.blocks imported")


def test_a_failed_import_leaves_nothing_behind() -> None:
    """The module is not left half-made in ``sys.modules``: every import raises again."""
    for _ in range(2):
        with pytest.raises(PlannedFeatureError):
            importlib.import_module("sdk.artifacts")
    assert "sdk.artifacts" not in sys.modules


def test_other_missing_names_stay_ordinary_errors() -> None:
    """Names that are not listed keep Python's usual errors."""
    with pytest.raises(ModuleNotFoundError) as caught:
        importlib.import_module("sdk.no_such_module")
    assert not isinstance(caught.value, NotSupportedError)
    with pytest.raises(AttributeError):
        _ = sdk.no_such_name  # type: ignore[attr-defined]
    assert not hasattr(sdk, "no_such_name")


def test_a_real_module_wins_over_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """The finder is last on ``sys.meta_path``: when a file provides a listed module (as
    ``sdk/blocks.py`` will), the file is imported and nothing here needs to change."""
    monkeypatch.setitem(MODULES, "sdk.cache_policies", MODULES["sdk.blocks"])
    monkeypatch.delitem(sys.modules, "sdk.cache_policies", raising=False)
    module = importlib.import_module("sdk.cache_policies")
    assert hasattr(module, "INPUTS")
    assert isinstance(sys.meta_path[-1], not_supported._Finder)
