"""A child process executing one flow run: start it, watch it, stop it.

The child is ``python -m runtime.worker.child`` with the same interpreter, in
its own session (a Ctrl-C meant for the worker does not reach it; stopping it
signals its whole process group, so processes it started go too). Its stdout
and stderr are the worker's. Whatever the flow does (segfault, ``os._exit``,
the OOM killer's SIGKILL), only the child dies; :func:`exit_message` says how.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from runtime.worker.child import Job

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The directory holding the ``runtime`` package (on the child's ``sys.path``)."""


def exit_message(returncode: int) -> str:
    """What a child's exit status says, for a Crashed state's message."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (what the OOM killer sends)" if -returncode == signal.SIGKILL else ""
        return f"The flow run's process was killed by {name}{hint}: exit code {returncode}."
    return f"The flow run's process exited with code {returncode} before the run ended."


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment, with this project importable and ``extra`` over it."""
    env = dict(os.environ)
    env.update(extra or {})
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.pop("STRATOFLOW_API_URL", None)  # the child writes to the stores, as its worker does
    return env


class ChildProcess:
    """One running child; :meth:`poll` says whether it ended and with what status."""

    def __init__(self, job: Job, env: Mapping[str, str] | None = None) -> None:
        self.job = job
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.worker.child"],
            stdin=subprocess.PIPE,
            env=child_environment(env),
            start_new_session=True,
            text=True,
        )
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(job.to_json())
            self._proc.stdin.close()
        except BrokenPipeError:  # it died at once: poll() says how
            pass

    @property
    def pid(self) -> int:
        """The child's process id (also its process group's)."""
        return self._proc.pid

    def poll(self) -> int | None:
        """The exit status once it ended (negative: killed by that signal), else None."""
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds for it to end; its status, or None if still running."""
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (nothing if it is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signum)

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM, then SIGKILL if it still runs after ``grace_seconds``; its exit status."""
        if self.poll() is None:
            self.signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_seconds
            while self.wait(min(0.1, max(0.0, deadline - time.monotonic()))) is None:
                if time.monotonic() >= deadline:
                    self.signal(signal.SIGKILL)
                    self._proc.wait()
                    break
        self.signal(signal.SIGKILL)  # whatever of its group is left
        code = self._proc.wait()
        return code
