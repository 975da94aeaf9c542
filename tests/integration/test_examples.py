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


@pytest.mark.timeout(180)
def test_the_deploy_demo_runs_three_runs_on_a_worker_and_stops_it() -> None:
    """``make demo``'s second part: a deployment's runs executed by a worker subprocess.

    Prefect's shape (docs/v3/deploy/index.mdx): deploy to a work pool, a worker polls it,
    ``run_deployment`` submits; each run goes Scheduled -> Pending -> Running -> Completed.
    """
    result = run_example("deploy_demo.py")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "deployed 'invoice/demo'" in out
    assert out.count("Scheduled -> Pending -> Running -> Completed") == 3
    assert out.count("worker: demo-worker:") == 3
    for expected in ("'ada: 9.80 EUR'", "'grace: 19.00 USD'", "'linus: 13.20 EUR'"):
        assert f"result: {expected}" in out
    assert out.count("log: 'pricing ") == 3
    assert "bundles unpacked in the worker's cache: 1" in out
    assert "worker stopped (SIGTERM), exit code 0" in out
    assert "Worker demo-worker:" in result.stderr and "stopped" in result.stderr
