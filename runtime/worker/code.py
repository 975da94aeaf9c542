"""Where a deployment's code is on the worker's machine, and loading its flow from there.

An entrypoint is ``"path/to/file.py:flow_function"`` (relative to the code
directory, or absolute) or ``"package.module:flow_function"`` (imported with the
code directory first on ``sys.path``), as Prefect's ``entrypoint``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.engine.flows import Flow
    from runtime.models import Deployment
    from runtime.stores import Stores

ENTRYPOINT_MODULE = "__stratoflow_entrypoint__"
"""The name a flow file loaded by path is registered under in ``sys.modules``."""


class CodeNotFound(RuntimeError):
    """The deployment's code or its flow function cannot be found or loaded (says which)."""


def split_entrypoint(entrypoint: str) -> tuple[str, str]:
    """``("file.py" or "package.module", "function")``; CodeNotFound when malformed."""
    target, sep, name = entrypoint.rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise CodeNotFound(
            f"entrypoint {entrypoint!r} must be 'path/to/file.py:flow_function' "
            "or 'package.module:flow_function'"
        )
    return target, name


def is_file_entrypoint(target: str) -> bool:
    """True for a path to a Python file (``x.py``, ``dir/x.py``), False for a module name."""
    return target.endswith(".py") or "/" in target or "\\" in target


def code_directory(stores: Stores, deployment: Deployment, cache_dir: Path) -> Path:
    """The directory the deployment's entrypoint is relative to, on this machine.

    A code bundle on S3 (``deployment.code_bundle``, what ``flow.deploy`` makes by
    default) is downloaded, checked against its SHA-256 and unpacked once per hash
    under ``cache_dir`` (:func:`runtime.bundles.materialize`); else
    ``deployment.path`` when set (Prefect's ``path``: code baked into the worker's
    image, or a checkout); else the directory of an absolute file entrypoint; else
    the worker's working directory (a module entrypoint importable from there).
    CodeNotFound when that directory does not exist or the bundle cannot be had.
    """
    if deployment.code_bundle is not None:
        from runtime.bundles import BundleError, materialize  # only workers of bundles need it

        try:
            return materialize(stores, deployment.code_bundle, cache_dir)
        except BundleError as exc:
            raise CodeNotFound(
                f"deployment {deployment.flow_name}/{deployment.name}: its code bundle "
                f"{deployment.code_bundle.uri}: {exc}"
            ) from None
    path = deployment.path
    if path:
        directory = Path(path).expanduser()
    elif deployment.entrypoint and Path(split_entrypoint(deployment.entrypoint)[0]).is_absolute():
        directory = Path(split_entrypoint(deployment.entrypoint)[0]).parent
    else:
        directory = Path.cwd()
    if not directory.is_dir():
        raise CodeNotFound(
            f"deployment {deployment.flow_name}/{deployment.name}: its code directory "
            f"{str(directory)!r} does not exist on this worker"
        )
    return directory.resolve()


def load_flow(entrypoint: str, code_dir: Path) -> Flow[..., Any]:
    """Import the entrypoint's module (the code directory first on ``sys.path``); its flow.

    CodeNotFound naming the file, module or function when one is missing, and when
    the object is not a flow. An exception raised while the module runs is raised
    as is (its traceback is the author's to read).
    """
    from runtime.engine.flows import Flow

    target, name = split_entrypoint(entrypoint)
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    if is_file_entrypoint(target):
        file = Path(target) if Path(target).is_absolute() else code_dir / target
        if not file.is_file():
            raise CodeNotFound(f"entrypoint {entrypoint!r}: no file {str(file)!r}")
        spec = importlib.util.spec_from_file_location(ENTRYPOINT_MODULE, file)
        if spec is None or spec.loader is None:
            raise CodeNotFound(f"entrypoint {entrypoint!r}: {str(file)!r} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[ENTRYPOINT_MODULE] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name is None or not target.startswith(exc.name):
                raise
            raise CodeNotFound(
                f"entrypoint {entrypoint!r}: no module {exc.name!r} in {str(code_dir)!r}"
            ) from None
    found = getattr(module, name, None)
    if found is None:
        raise CodeNotFound(f"entrypoint {entrypoint!r}: {target!r} has no {name!r}")
    if not isinstance(found, Flow):
        raise CodeNotFound(
            f"entrypoint {entrypoint!r}: {name!r} is a {type(found).__name__}, not a flow "
            "(decorate it with @flow)"
        )
    return found
