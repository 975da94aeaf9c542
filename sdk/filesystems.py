"""``sdk.filesystems``: ``LocalFileSystem``, Prefect's local result storage.

``LocalFileSystem(basepath=...)`` given as ``result_storage=`` to a task or a flow
keeps that run's persisted result as a file under ``basepath`` (named by the task's
``result_storage_key``, else a UUID) instead of in the installation (inline or S3).
Result files are sealed with the installation's payload key, like pickled results in
S3, and read back only after their MAC checks out (:mod:`runtime.local_results`).

Differences from Prefect: it is not a block. It is used as an instance (no
``.save()`` / ``.load()``, no ``"local-file-system/name"`` references: blocks arrive in
a later phase), and the files hold Stratoflow's sealed payload, not Prefect's JSON
result document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

from runtime.local_results import LocalResultStorage
from sdk import not_supported as _not_supported

__all__ = ["LocalFileSystem"]

__getattr__ = _not_supported.module_getattr(__name__)

_BLOCKS = _not_supported.Gap(
    "blocks (saving, loading and naming configuration objects)",
    "Until then, create the LocalFileSystem where you use it.",
    "a later phase (after schedules)",
)
_DEPLOYMENT_STORAGE = _not_supported.Gap(
    "deployment storage blocks (copying flow code to and from a directory)",
    "flow.deploy() packs the flow's directory into an S3 code bundle that workers "
    "download; from_source(path, ...) with push=False uses a path the worker has",
)


class LocalFileSystem(LocalResultStorage):
    """A local directory: result storage for tasks and flows, and plain file reads/writes."""

    def _resolve_path(self, path: str) -> Path:
        """``path`` under ``basepath`` (relative, or absolute inside it); ValueError outside."""
        root = self.root
        resolved = Path(path).expanduser()
        resolved = (resolved if resolved.is_absolute() else root / resolved).resolve()
        if resolved != root and root not in resolved.parents:
            raise ValueError(f"Provided path {resolved} is outside of the base path {root}.")
        return resolved

    def read_path(self, path: str) -> bytes:
        """The bytes of the file at ``path`` (ValueError if it is a directory)."""
        resolved = self._resolve_path(path)
        if not resolved.exists():
            raise ValueError(f"Path {resolved} does not exist.")
        if not resolved.is_file():
            raise ValueError(f"Path {resolved} is not a file.")
        return resolved.read_bytes()

    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` to ``path`` (parents created); the written file's path."""
        resolved = self._resolve_path(path)
        if resolved.exists() and not resolved.is_file():
            raise ValueError(f"Path {resolved} already exists and is not a file.")
        resolved.parent.mkdir(parents=True, exist_ok=True)
        resolved.write_bytes(content)
        return str(resolved)

    def save(self, name: str, overwrite: bool = False) -> NoReturn:
        """Blocks arrive in a later phase: raises PlannedFeatureError."""
        raise _BLOCKS.error("LocalFileSystem.save")

    @classmethod
    def load(cls, name: str, *args: Any, **kwargs: Any) -> NoReturn:
        """Blocks arrive in a later phase: raises PlannedFeatureError."""
        raise _BLOCKS.error("LocalFileSystem.load")

    def get_directory(
        self, from_path: str | None = None, local_path: str | None = None
    ) -> NoReturn:
        """Not supported (deployment code goes in S3 bundles): raises NotSupportedError."""
        raise _DEPLOYMENT_STORAGE.error("LocalFileSystem.get_directory")

    def put_directory(self, local_path: str | None = None, to_path: str | None = None) -> NoReturn:
        """Not supported (deployment code goes in S3 bundles): raises NotSupportedError."""
        raise _DEPLOYMENT_STORAGE.error("LocalFileSystem.put_directory")
