"""Pure parts of the worker: entrypoints, parameter merging, exit statuses, the job's wire form."""

from __future__ import annotations

import signal

import pytest

from runtime.worker.child import Job, merged_parameters
from runtime.worker.code import CodeNotFound, is_file_entrypoint, split_entrypoint
from runtime.worker.runner import exit_message


@pytest.mark.parametrize(
    ("entrypoint", "target", "name", "is_file"),
    [
        ("flows.py:etl", "flows.py", "etl", True),
        ("pkg/flows.py:etl", "pkg/flows.py", "etl", True),
        ("/abs/dir/flows.py:etl", "/abs/dir/flows.py", "etl", True),
        ("pkg.flows:etl", "pkg.flows", "etl", False),
        ("C:\\code\\flows.py:etl", "C:\\code\\flows.py", "etl", True),  # the last colon splits
    ],
)
def test_entrypoints_split_into_a_file_or_module_and_a_name(
    entrypoint: str, target: str, name: str, is_file: bool
) -> None:
    """Prefect's entrypoint forms: ``path/to/file.py:func`` and ``module.path:func``
    (docs/v3/concepts/deployments.mdx, "entrypoint")."""
    assert split_entrypoint(entrypoint) == (target, name)
    assert is_file_entrypoint(target) is is_file


@pytest.mark.parametrize("bad", ["flows.py", ":etl", "flows.py:", "flows.py:not-a-name", ""])
def test_a_malformed_entrypoint_is_refused_with_the_expected_forms(bad: str) -> None:
    with pytest.raises(CodeNotFound, match=r"must be 'path/to/file.py:flow_function'"):
        split_entrypoint(bad)


def test_the_runs_parameters_win_over_the_deployments() -> None:
    """Prefect: run parameters override the deployment's defaults, key by key."""
    merged = merged_parameters({"a": 1, "b": {"x": 1}}, {"b": {"y": 2}, "c": 3})
    assert merged == {"a": 1, "b": {"y": 2}, "c": 3}


def test_exit_statuses_are_explained() -> None:
    assert exit_message(3) == "The flow run's process exited with code 3 before the run ended."
    assert exit_message(-signal.SIGKILL) == (
        "The flow run's process was killed by SIGKILL (what the OOM killer sends): exit code -9."
    )
    assert exit_message(-signal.SIGSEGV) == (
        "The flow run's process was killed by SIGSEGV: exit code -11."
    )


def test_a_job_survives_its_wire_form() -> None:
    job = Job("run-1", "flows.py:etl", "/code", {"n": [1, 2]})
    assert Job.from_json(job.to_json()) == job
