"""The examples run as a user runs them: a plain ``python examples/...`` on the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "STRATOFLOW_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_prefect_docs_caching_example_runs_unchanged() -> None:
    result = run_example("prefect_docs/caching__persist_result.py")
    assert result.returncode == 0, result.stderr
    assert "Task run 'add_one-1' - Finished in state Cached(type=COMPLETED)" in result.stderr
    assert result.stderr.count("Finished in state Completed()") == 3  # add_one-0, -2, the flow


def test_prefect_docs_map_example_runs_unchanged() -> None:
    result = run_example("prefect_docs/run_work_concurrently__map_unmapped.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[16, 17, 18]"


@pytest.mark.timeout(180)
def test_the_demo_retries_limits_and_hits_the_cache() -> None:
    result = run_example("etl_demo.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "run 1: etl() returned 30" in out and "run 2: etl() returned 30" in out
    assert "AwaitingRetry -> Retrying -> Completed" in out
    assert "AwaitingConcurrencySlot" in out
    assert out.count("Pending -> Cached") == 6
    assert "6 cache entries" in out
