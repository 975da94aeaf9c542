"""``sdk.results``: read and write persisted results by key (Prefect's ``prefect.results``).

As in Prefect's docs ("Reading persisted results", advanced/results.mdx)::

    store = ResultStore(result_storage=LocalFileSystem(basepath="/tmp/results"))
    record = store.read(key="my-result")   # a task with result_storage_key="my-result"
    record.result, record.metadata.storage_key, record.metadata.serializer.type

With ``result_storage`` a :class:`~sdk.filesystems.LocalFileSystem`, keys are file names
under its ``basepath``. Without one, keys name objects of the installation's results
bucket (``results/<key>``: where a task's ``result_storage_key`` puts its result); that
needs the stores (the embedded default, or ``AWS_ENDPOINT_URL`` / ``STRATOFLOW_PREFIX``),
not the HTTP API.

Pickled payloads are only unpickled once their MAC checks out with the installation's
payload key (result files are all sealed, whatever the serializer).

Differences from Prefect: no in-memory cache, locks (``holder``) or metadata storage;
``ResultRecord.metadata`` has ``storage_key``, ``serializer`` (with ``.type``) and
``expiration`` only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runtime.engine.results import result_file_key
from runtime.errors import ResultNotFound
from runtime.local_results import LocalResultStorage
from runtime.payload_auth import MAGIC, PayloadAuthenticationError
from runtime.serializers import get_serializer

if TYPE_CHECKING:
    from runtime.results import ResultStore as S3ResultStore

__all__ = ["ResultRecord", "ResultRecordMetadata", "ResultStore", "get_result_store"]

_SERIALIZER_NAMES = {"pickle": "PickleSerializer", "json": "JSONSerializer"}


@dataclass(frozen=True)
class SerializerInfo:
    """Which serializer a result was written with (``type``: ``pickle`` or ``json``)."""

    type: str

    def __repr__(self) -> str:
        return f"{_SERIALIZER_NAMES.get(self.type, 'Serializer')}(type={self.type!r})"


@dataclass(frozen=True)
class ResultRecordMetadata:
    """Facts about a stored result (Prefect's ``ResultRecordMetadata``)."""

    storage_key: str
    serializer: SerializerInfo
    expiration: datetime | None = None


@dataclass(frozen=True)
class ResultRecord:
    """A stored result: the value (``result``) and its ``metadata``."""

    result: Any
    metadata: ResultRecordMetadata = field(repr=False)


def _engine_client() -> Any:
    from runtime.engine import backend

    return backend._client


@dataclass
class ResultStore:
    """Results by key, in ``result_storage`` (a local directory) or in the results bucket."""

    result_storage: LocalResultStorage | None = None
    serializer: str = "pickle"

    def __post_init__(self) -> None:
        if self.result_storage is not None and not isinstance(
            self.result_storage, LocalResultStorage
        ):
            raise TypeError(
                "result_storage must be sdk.filesystems.LocalFileSystem (or None for the "
                f"installation's results bucket), not {type(self.result_storage).__name__}"
            )
        get_serializer(self.serializer)  # ValueError for an unknown one

    # ------------------------------------------------------------------ where

    def _s3(self) -> S3ResultStore:
        client = _engine_client()
        stores = getattr(client, "stores", None)
        if stores is None:
            from runtime.engine.backend import connect_stores

            stores = connect_stores()  # RuntimeError naming the fix when the API is set
        results: S3ResultStore = stores.results
        return results

    # ------------------------------------------------------------------ read

    def exists(self, key: str) -> bool:
        """Whether a result is stored under ``key``."""
        if self.result_storage is not None:
            return self.result_storage.path_for(key).is_file()
        return self._s3().exists(key)

    def read(self, key: str, holder: str | None = None) -> ResultRecord:
        """The record stored under ``key``; ResultNotFound when there is none.

        Raises :class:`~runtime.payload_auth.PayloadAuthenticationError` for a payload
        not sealed with this installation's key.
        """
        payload_key = result_file_key(_engine_client())
        if self.result_storage is not None:
            path = self.result_storage.path_for(key)
            try:
                sealed = path.read_bytes()
            except FileNotFoundError:
                raise ResultNotFound(f"no result file {path}", uri=path.as_uri()) from None
            serializer, data = self._open_any(sealed, payload_key, what=f"result file {path}")
        else:
            stored = self._s3().read_bytes(key)
            if stored.startswith(MAGIC):
                serializer, data = self._open_any(stored, payload_key, what=f"result {key!r}")
            else:  # json results in S3 are not sealed (they never run code)
                serializer, data = "json", stored
        value = get_serializer(serializer).loads(data)
        return ResultRecord(value, ResultRecordMetadata(key, SerializerInfo(serializer)))

    @staticmethod
    def _open_any(sealed: bytes, payload_key: Any, *, what: str) -> tuple[str, bytes]:
        """The serializer and payload of a sealed blob (its MAC binds the serializer's name)."""
        first: PayloadAuthenticationError | None = None
        for serializer in ("pickle", "json"):
            try:
                return serializer, payload_key.open(sealed, serializer, what=what)
            except PayloadAuthenticationError as exc:
                first = first or exc
        assert first is not None
        raise first

    # ------------------------------------------------------------------ write

    def write(
        self,
        obj: Any,
        key: str | None = None,
        expiration: datetime | None = None,
        holder: str | None = None,
    ) -> ResultRecord:
        """Store ``obj`` under ``key`` (a fresh UUID when None) with this store's serializer."""
        key = key or uuid.uuid4().hex
        payload_key = result_file_key(_engine_client())
        if self.result_storage is not None:
            self.result_storage.persist(
                obj, serializer=self.serializer, key=key, payload_key=payload_key
            )
        else:
            self._s3().persist(
                obj, serializer=self.serializer, storage_key=key, payload_key=payload_key
            )
        return ResultRecord(
            obj, ResultRecordMetadata(key, SerializerInfo(self.serializer), expiration)
        )


def get_result_store() -> ResultStore:
    """The result store of the current task or flow run (its ``result_storage``), else the
    installation's results bucket."""
    from runtime.engine.context import current_flow_run, current_task_run

    task_ctx = current_task_run()
    flow_ctx = current_flow_run()
    storage = getattr(task_ctx.task, "result_storage", None) if task_ctx else None
    if storage is None and flow_ctx is not None:
        storage = getattr(flow_ctx.flow, "result_storage", None)
    return ResultStore(result_storage=storage)
