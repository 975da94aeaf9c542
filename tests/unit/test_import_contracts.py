"""The layering that .importlinter enforces, and the exceptions it declares, hold as described.

`make lint` runs the contracts themselves (lint-imports); these tests pin the two
declared exceptions: ``State.result()`` reaches the engine only through a loader the
engine registers, and sdk reaches handlers only from function bodies of the CLI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        "runtime", "sdk", "handlers", cache_dir=None, exclude_type_checking_imports=True
    )


def test_states_import_nothing_of_the_engine(graph: grimp.ImportGraph) -> None:
    chains = graph.find_shortest_chains(
        importer="runtime.states", imported="runtime.engine", as_packages=True
    )
    assert chains == set(), f"runtime.states reaches the engine: {sorted(chains)}"


def test_flow_engine_does_not_import_flows(graph: grimp.ImportGraph) -> None:
    chain = graph.find_shortest_chain(
        importer="runtime.engine.flow_engine", imported="runtime.engine.flows"
    )
    assert chain is None, f"flows <-> flow_engine cycle: {' -> '.join(chain or ())}"


def test_runtime_modules_form_no_cycle(graph: grimp.ImportGraph) -> None:
    runtime = sorted(m for m in graph.modules if m.startswith("runtime."))
    cycles = [
        (a, b)
        for a in runtime
        for b in graph.find_modules_directly_imported_by(a)
        if b.startswith("runtime.") and graph.chain_exists(importer=b, imported=a)
    ]
    assert cycles == []


def _handler_imports(path: Path) -> list[tuple[int, bool]]:
    """``(line, inside a function)`` of every ``handlers`` import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        if any(name.split(".")[0] == "handlers" for name in names):
            found.append((node.lineno, id(node) in in_function))
    return found


def test_sdk_imports_handlers_only_lazily_from_the_cli() -> None:
    offenders = {}
    for path in sorted((ROOT / "sdk").rglob("*.py")):
        found = _handler_imports(path)
        name = str(path.relative_to(ROOT))
        if found and path.parent != ROOT / "sdk" / "cli":
            offenders[name] = "outside sdk/cli"
        elif module_level := [line for line, lazy in found if not lazy]:
            offenders[name] = f"module-level import at lines {module_level}"
    assert offenders == {}
    assert _handler_imports(ROOT / "sdk" / "cli" / "dev.py")  # the check sees the real ones


def test_state_result_without_the_engine_says_what_is_missing() -> None:
    code = (
        "import sys\n"
        "from runtime.states import Completed, ResultLoaderNotRegistered\n"
        "try:\n"
        "    Completed().result()\n"
        "except ResultLoaderNotRegistered as exc:\n"
        "    print('refused:', exc)\n"
        "print('engine imported:', any(m.startswith('runtime.engine') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "refused: State.result() needs the engine's result loader" in out
    assert "engine imported: False" in out


def test_importing_the_sdk_registers_the_engine_loader() -> None:
    code = (
        "import sdk\n"
        "from sdk.states import Completed\n"
        "s = Completed()\n"
        "s.with_data(41)\n"
        "print(s.result() + 1)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "42"
