"""Results kept as files under a local directory (Prefect's ``LocalFileSystem`` result storage).

A task or flow given ``result_storage=LocalFileSystem(basepath=...)`` persists its
result to ``<basepath>/<key>`` instead of inline/S3: ``key`` is the rendered
``result_storage_key`` when the task has one, else a fresh UUID. The run's
:class:`~runtime.states.ResultRef` then holds the file's ``file://`` URI.

Every file is *sealed* with the installation's payload key (:mod:`runtime.payload_auth`),
whatever its serializer, and opened (MAC checked) before it is deserialized. A
``file://`` reference comes from a run record or a cache record, which any API caller
can write: sealing every file means such a reference can only ever load a file an
engine holding the key wrote, never an arbitrary file of the machine (a JSON
config, say) passed off as a result.

Only the engine reads and writes these files (in the process that runs the flow);
the API never touches a ``file://`` reference.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from runtime.errors import ResultNotFound
from runtime.payload_auth import PayloadKey
from runtime.serializers import get_serializer
from runtime.states import ResultRef

__all__ = ["FILE_SCHEME", "LocalResultStorage", "is_local_ref", "load_local_result"]

FILE_SCHEME = "file://"
"""The scheme of a reference to a result file."""


def is_local_ref(ref: ResultRef | None) -> bool:
    """True when ``ref`` points at a result file (a ``file://`` URI), not inline or S3."""
    return (
        ref is not None and ref.inline is None and (ref.storage_key or "").startswith(FILE_SCHEME)
    )


def _path_of(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise ValueError(f"not a local file URI: {uri!r}")
    return Path(url2pathname(parts.path))


class LocalResultStorage:
    """A directory results are written to (``basepath``; the working directory if None)."""

    def __init__(self, basepath: str | os.PathLike[str] | None = None) -> None:
        self.basepath = None if basepath is None else str(basepath)

    @property
    def root(self) -> Path:
        """The directory, absolute (``~`` expanded)."""
        return Path(self.basepath or ".").expanduser().resolve()

    def path_for(self, key: str) -> Path:
        """Where ``key`` is stored; ValueError for a key that leads outside the directory."""
        if not key or key.startswith(FILE_SCHEME):
            raise ValueError(f"a result key must be a relative path, not {key!r}")
        root = self.root
        path = (root / key).resolve()
        if root not in path.parents:
            raise ValueError(f"result key {key!r} leads outside the result storage {root}")
        return path

    def write_bytes(self, key: str, data: bytes) -> Path:
        """Write ``data`` at ``key`` atomically (a reader never sees half a file); the path."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def persist(
        self, value: Any, *, serializer: str, key: str | None, payload_key: PayloadKey
    ) -> ResultRef:
        """Serialize and seal ``value`` into the file for ``key`` (a UUID when None)."""
        ser = get_serializer(serializer)
        sealed = payload_key.seal(ser.dumps(value), ser.name)
        path = self.write_bytes(key or uuid.uuid4().hex, sealed)
        return ResultRef(serializer=ser.name, storage_key=path.as_uri(), size=len(sealed))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.root == self.root  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.root))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(basepath={self.basepath!r})"


def load_local_result(ref: ResultRef, payload_key: PayloadKey) -> Any:
    """The value in the result file ``ref`` points at, once its MAC checks out.

    Raises :class:`~runtime.errors.ResultNotFound` when the file is gone and
    :class:`~runtime.payload_auth.PayloadAuthenticationError` when it was not sealed with
    this installation's key (not written by the engine, or altered).
    """
    uri = ref.storage_key or ""
    path = _path_of(uri)
    try:
        sealed = path.read_bytes()
    except FileNotFoundError:
        raise ResultNotFound(
            f"result file {path} not found: it was deleted, or written on another machine "
            "(a local result storage is only readable where it was written)",
            uri=uri,
        ) from None
    data = payload_key.open(sealed, ref.serializer, what=f"the result file {path}")
    return get_serializer(ref.serializer).loads(data)
