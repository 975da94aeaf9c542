"""Prefect 3's documentation programs run on Stratoflow: ``make compat``.

Every ``examples/prefect_docs/<page>__<what>.py`` is a program from a page of Prefect 3's
documentation with only ``prefect`` replaced by ``sdk`` in its imports (a top comment cites
the page and says what, if anything, was trimmed). Each runs as a user runs it: a plain
``python file.py`` in a subprocess on the embedded default (no ``AWS_ENDPOINT_URL``, no
``STRATOFLOW_*``), and must

* exit with status 0 (or the status of an ``# expect-exit: N`` line),
* print every ``# expect: <text>`` line's text on stdout,
* write every ``# expect-stderr: <text>`` line's text on stderr (where run logs go, for the
  pages whose programs print nothing themselves).

The programs run in parallel (a few at a time: each starts its own moto server), once per
session, and each gets its own test so a failure names the page.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "prefect_docs"
PROGRAMS = sorted(EXAMPLES.glob("*.py"))
#: Programs run at once (each is mostly waiting on its moto server; the machine has few cores).
PARALLEL = 4
#: Seconds one program may take.
PROGRAM_TIMEOUT = 300

_EXPECT = re.compile(r"^# expect(-stderr|-exit)?: ?(.*?)\s*$")


@dataclass(frozen=True)
class Expectations:
    """What a program's ``# expect...`` lines ask of its run."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    exit_code: int = 0


def expectations(path: Path) -> Expectations:
    """The ``# expect: ...``, ``# expect-stderr: ...`` and ``# expect-exit: N`` lines."""
    out: list[str] = []
    err: list[str] = []
    code = 0
    for line in path.read_text().splitlines():
        match = _EXPECT.match(line)
        if match is None:
            continue
        kind, text = match.groups()
        if kind == "-exit":
            code = int(text)
        elif kind == "-stderr":
            err.append(text)
        else:
            out.append(text)
    return Expectations(out, err, code)


@dataclass(frozen=True)
class Run:
    """A finished program: its process and how long it took."""

    process: subprocess.CompletedProcess[str]
    seconds: float


def run_program(path: Path) -> Run:
    """``python path`` on the embedded default, from the repository root."""
    started = time.monotonic()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "STRATOFLOW_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.run(
        [sys.executable, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROGRAM_TIMEOUT,
        cwd=ROOT,
    )
    return Run(process, time.monotonic() - started)


def _selected(session: pytest.Session) -> list[Path]:
    """The programs whose tests this session runs (``-k`` runs only those)."""
    names = {
        item.callspec.params["program"]
        for item in session.items
        if item.originalname == "test_prefect_docs_program"  # type: ignore[attr-defined]
    }
    return [p for p in PROGRAMS if p.name in names]


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[Run]]]:
    """Every selected program started at once on a small pool; each test waits for its own.

    At the end, the wall time and each program's time are printed (``-s`` shows them).
    """
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="prefect-docs") as pool:
        futures = {p.name: pool.submit(run_program, p) for p in _selected(request.session)}
        yield futures
    elapsed = time.monotonic() - started
    times = [f"{f.result().seconds:6.1f}s  {name}" for name, f in futures.items()]
    print(f"\n{len(futures)} Prefect docs programs, {PARALLEL} at a time: {elapsed:.1f}s")
    print("\n".join(times))


def test_every_program_states_what_it_prints() -> None:
    """A program without an ``# expect`` line checks nothing but its exit code: refuse it."""
    assert PROGRAMS, f"no programs under {EXAMPLES}"
    silent = [p.name for p in PROGRAMS if not (expectations(p).stdout or expectations(p).stderr)]
    assert silent == [], f"add an '# expect: <printed text>' line to {silent}"


def test_expectation_lines_are_parsed(tmp_path: Path) -> None:
    """The runner's own parsing: stdout, stderr and exit expectations, other comments ignored."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "# a comment\nprint(1)\n# expect: 1 \n# expect-stderr: log\n# expect-exit: 3\n"
    )
    assert expectations(sample) == Expectations(["1"], ["log"], 3)


@pytest.mark.timeout(PROGRAM_TIMEOUT * (len(PROGRAMS) // PARALLEL + 2))
@pytest.mark.parametrize("program", [p.name for p in PROGRAMS])
def test_prefect_docs_program(program: str, runs: dict[str, Future[Run]]) -> None:
    """The program exits as expected and prints what its ``# expect`` lines say."""
    expected = expectations(EXAMPLES / program)
    result = runs[program].result().process
    report = f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    assert result.returncode == expected.exit_code, report
    missing = [text for text in expected.stdout if text not in result.stdout]
    missing += [f"(stderr) {text}" for text in expected.stderr if text not in result.stderr]
    assert missing == [], f"not printed: {missing}\n{report}"
