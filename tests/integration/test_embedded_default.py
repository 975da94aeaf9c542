"""The embedded default's guards, seen as a user sees them: a plain Python process.

* Without the ``local`` extra (moto's server), it names the extra to install in one line.
* Inside AWS Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set) it refuses to start: an
  in-process moto would lose every write when the sandbox goes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: A flow called in a plain script: the embedded default's first use.
FLOW = """
from sdk import flow

@flow
def hello() -> int:
    return 1

hello()
print("ran")
"""

#: Makes ``moto`` (and its submodules) unimportable, as on a machine without the extra.
BLOCK_MOTO = """
import sys
from importlib.abc import MetaPathFinder

class _NoMoto(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "moto" or name.startswith("moto."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoMoto())
"""


def run_python(code: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_ENDPOINT_URL", "STRATOFLOW_API_URL", "STRATOFLOW_PREFIX"))
        and k != "AWS_LAMBDA_FUNCTION_NAME"
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_without_moto_the_embedded_default_names_the_extra() -> None:
    result = run_python(BLOCK_MOTO + FLOW)
    assert result.returncode == 1
    assert "ran" not in result.stdout
    line = last_line(result.stderr)
    assert line.startswith("runtime.engine.backend.EmbeddedBackendUnavailable: ")
    assert "'moto' is not installed: pip install 'stratoflow[local]'" in line


def test_without_moto_stratoflow_dev_names_the_extra() -> None:
    cli = (
        "import sys\n"
        "from sdk.cli import main\n"
        "sys.argv = ['stratoflow', 'dev', '--port', '0']\n"
        "main()\n"
    )
    result = run_python(BLOCK_MOTO + cli)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: stratoflow dev runs a moto server in this process, and 'moto' is not "
        "installed: pip install 'stratoflow[local]'"
    ]


def test_the_blocker_blocks_only_moto() -> None:
    """The same process without the blocker runs the flow: the failure above is moto's absence."""
    result = run_python(FLOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ran"


def test_the_embedded_default_refuses_to_start_inside_lambda() -> None:
    result = run_python(FLOW, AWS_LAMBDA_FUNCTION_NAME="stratoflow-api")
    assert result.returncode == 1
    assert "ran" not in result.stdout
    line = last_line(result.stderr)
    assert line.startswith("runtime.engine.backend.EmbeddedBackendUnavailable: ")
    assert "refuses to start inside AWS Lambda (function 'stratoflow-api')" in line
    assert "set STRATOFLOW_PREFIX" in line


def test_inside_lambda_a_configured_backend_is_used_not_refused() -> None:
    """The refusal concerns the embedded default only: with an API URL nothing is refused."""
    code = (
        "from runtime.engine.backend import get_engine_client\n"
        "print(type(get_engine_client()).__name__)\n"
    )
    result = run_python(
        code, AWS_LAMBDA_FUNCTION_NAME="stratoflow-api", STRATOFLOW_API_URL="http://127.0.0.1:9"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ApiEngineClient"
