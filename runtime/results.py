"""Persisted results: small ones inline in the reference, larger ones in S3.

:meth:`ResultStore.persist` serializes a value and returns a
:class:`~runtime.states.ResultRef`, the only thing DynamoDB ever holds:

* a serialized payload of at most ``inline_max_bytes`` (as stored: JSON text,
  or base64 text for pickle) lives in ``ResultRef.inline``;
* a larger one is put to ``s3://<bucket>/results/<uuid4>`` and the reference
  holds that URI in ``storage_key``;
* an explicit ``storage_key`` (a task's ``result_storage_key``) always goes to
  S3, at ``results/<storage_key>``, so people and other tools can find it
  there; writing the same key again overwrites the object, as in Prefect.

:meth:`ResultStore.load` reverses either form; a reference whose S3 object is
gone raises :class:`ResultNotFound` naming the URI.

Through the API, result bytes never pass through Lambda (whose payloads stop at 6 MB):
:meth:`ResultStore.presign_upload` hands the client a presigned S3 ``PUT`` URL for a new
result's object and :meth:`ResultStore.presign_download` a presigned ``GET`` URL for a
stored one; small results stay inline in the reference (:func:`inline_ref`) and need no
request at all.

A ``pickle`` payload is sealed with the installation's payload key (an HMAC,
:mod:`runtime.payload_auth`) by :meth:`ResultStore.persist` and opened by
:meth:`ResultStore.load`, which refuses (``PayloadAuthenticationError``) a
pickle without a valid MAC and never unpickles one without a key. The bytes-level
methods (:meth:`ResultStore.persist_bytes`, :meth:`ResultStore.load_bytes`), used
by the API, neither seal nor open anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from runtime.errors import ResultNotFound
from runtime.inline_results import inline_bytes, inline_ref
from runtime.limits import INLINE_RESULT_MAX_BYTES, RESULT_UPLOAD_MAX_BYTES
from runtime.payload_auth import PayloadAuthenticationError, PayloadKey, needs_mac
from runtime.serializers import get_serializer
from runtime.states import ResultRef

__all__ = [
    "PRESIGNED_URL_SECONDS",
    "RESULTS_PREFIX",
    "PresignedTransfer",
    "ResultNotFound",
    "ResultStore",
    "describe_ref",
    "inline_bytes",
    "inline_ref",
    "open_payload",
    "parse_s3_uri",
]

RESULTS_PREFIX = "results/"
"""Every result object's key starts with this."""

PRESIGNED_URL_SECONDS = 900
"""How long a presigned upload or download URL stays valid (15 minutes)."""

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://bucket/key`` URI; ValueError for anything else."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, sep, key = uri[len("s3://") :].partition("/")
    if not bucket or not sep or not key:
        raise ValueError(f"not an S3 URI of the form s3://bucket/key: {uri!r}")
    return bucket, key


def describe_ref(ref: ResultRef) -> str:
    """How a message names a result: its S3 URI, or "an inline pickle result"."""
    if ref.inline is None and ref.storage_key:
        return f"the {ref.serializer} result {ref.storage_key}"
    return f"an inline {ref.serializer} result"


def open_payload(ref: ResultRef, data: bytes, payload_key: PayloadKey | None) -> Any:
    """The value in ``data``, the stored bytes of ``ref``; pickles are verified first.

    Raises :class:`~runtime.payload_auth.PayloadAuthenticationError` for a pickle
    whose MAC is missing or wrong, or when no key is given to check it.
    """
    ser = get_serializer(ref.serializer)
    if needs_mac(ser.name):
        if payload_key is None:
            raise PayloadAuthenticationError(
                f"{describe_ref(ref)} cannot be authenticated without the payload key; "
                f"refusing to unpickle it",
                reason="no_key",
            )
        data = payload_key.open(data, ser.name, what=describe_ref(ref))
    return ser.loads(data)


def _content_type(serializer: str) -> str:
    return "application/json" if serializer == "json" else "application/octet-stream"


@dataclass(frozen=True)
class PresignedTransfer:
    """A presigned S3 request: send ``method`` to ``url`` with exactly ``headers``."""

    url: str
    method: str
    expires_in: int
    headers: dict[str, str] = field(default_factory=dict)


class ResultStore:
    """Serializes results and keeps them inline or in the results bucket.

    ``s3_client`` is a boto3 S3 client (any endpoint); ``bucket`` the results
    bucket (``specs(prefix).results.name``).
    """

    def __init__(self, s3_client: Any, bucket: str, inline_max_bytes: int = 16384) -> None:
        if not 0 <= inline_max_bytes <= INLINE_RESULT_MAX_BYTES:
            raise ValueError(f"inline_max_bytes must be between 0 and {INLINE_RESULT_MAX_BYTES}")
        self.s3 = s3_client
        self.bucket = bucket
        self.inline_max_bytes = inline_max_bytes

    # ------------------------------------------------------------------ keys

    def object_key(self, storage_key: str) -> str:
        """The S3 object key of a storage key: ``results/<storage_key>`` (kept if already so)."""
        key = storage_key.lstrip("/")
        if not key:
            raise ValueError("storage_key must not be empty")
        return key if key.startswith(RESULTS_PREFIX) else RESULTS_PREFIX + key

    def uri(self, storage_key: str) -> str:
        """The ``s3://`` URI a storage key is persisted at."""
        return f"s3://{self.bucket}/{self.object_key(storage_key)}"

    def _locate(self, storage_key: str) -> tuple[str, str]:
        if storage_key.startswith("s3://"):
            return parse_s3_uri(storage_key)
        return self.bucket, self.object_key(storage_key)

    # ------------------------------------------------------------------ write

    def persist(
        self,
        value: Any,
        *,
        serializer: str = "pickle",
        storage_key: str | None = None,
        payload_key: PayloadKey | None = None,
    ) -> ResultRef:
        """Serialize ``value`` and keep it inline (small) or in S3; return its reference.

        A pickle is sealed with ``payload_key`` (required for pickle: ValueError
        without one). Raises :class:`~runtime.serializers.SerializationError` when
        the serializer cannot handle the value, ValueError for an unknown serializer.
        """
        ser = get_serializer(serializer)
        data = ser.dumps(value)
        if needs_mac(ser.name):
            if payload_key is None:
                raise ValueError(f"a {ser.name} result needs the payload key to be sealed")
            data = payload_key.seal(data, ser.name)
        return self.persist_bytes(data, serializer=ser.name, storage_key=storage_key)

    def persist_bytes(
        self,
        data: bytes,
        *,
        serializer: str,
        storage_key: str | None = None,
        result_id: str | None = None,
    ) -> ResultRef:
        """Keep already serialized ``data`` inline (small) or in S3; return its reference.

        The bytes are stored as given, never deserialized here (the API stores
        pickles it must not load). Inline, a ``json`` payload is kept as its UTF-8
        text and anything else as base64; a ``json`` payload that is not UTF-8 goes
        to S3. A payload too large for inline goes to ``results/<result_id>`` (the
        caller's id, so a repeat writes the same object) or to a fresh UUID.
        ValueError for an unknown serializer.
        """
        ser = get_serializer(serializer)
        if storage_key is None:
            ref = inline_ref(data, ser.name, self.inline_max_bytes)
            if ref is not None:
                return ref
            storage_key = result_id or str(uuid.uuid4())
        bucket, key = self._locate(storage_key)
        self.s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType=_content_type(ser.name),
            Metadata={"stratoflow-serializer": ser.name},
        )
        return ResultRef(serializer=ser.name, storage_key=f"s3://{bucket}/{key}", size=len(data))

    def presign_upload(
        self,
        *,
        serializer: str,
        size: int,
        storage_key: str | None = None,
        result_id: str | None = None,
        expires_in: int = PRESIGNED_URL_SECONDS,
    ) -> tuple[ResultRef, PresignedTransfer]:
        """The reference a result of ``size`` bytes will have, and the presigned PUT storing it.

        The object goes where :meth:`persist_bytes` would put a result too large for
        inline: ``results/<storage_key>``, else ``results/<result_id>`` (the caller's id,
        so a repeat targets the same object), else a fresh UUID. Nothing is written
        until the client sends the bytes. ValueError for an unknown serializer or a
        size outside ``0..RESULT_UPLOAD_MAX_BYTES``.
        """
        ser = get_serializer(serializer)
        if not 0 <= size <= RESULT_UPLOAD_MAX_BYTES:
            raise ValueError(f"size must be between 0 and {RESULT_UPLOAD_MAX_BYTES} bytes")
        bucket, key = self._locate(storage_key or result_id or str(uuid.uuid4()))
        headers = {
            "Content-Type": _content_type(ser.name),
            "x-amz-meta-stratoflow-serializer": ser.name,
        }
        url = self.s3.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": bucket,
                "Key": key,
                "ContentType": headers["Content-Type"],
                "Metadata": {"stratoflow-serializer": ser.name},
            },
            ExpiresIn=expires_in,
        )
        ref = ResultRef(serializer=ser.name, storage_key=f"s3://{bucket}/{key}", size=size)
        return ref, PresignedTransfer(url, "PUT", expires_in, headers)

    def presign_download(
        self, ref: ResultRef, *, expires_in: int = PRESIGNED_URL_SECONDS
    ) -> PresignedTransfer:
        """A presigned GET of the S3 object ``ref`` points at.

        Raises :class:`ResultNotFound` when the object is missing (checked first, so a
        caller learns it now rather than from the URL), ValueError for an inline
        reference (its bytes are in the reference) or one without a storage key.
        """
        if ref.inline is not None or not ref.storage_key:
            raise ValueError("only a result stored in S3 (a storage_key, no inline) is downloaded")
        bucket, key = self._locate(ref.storage_key)
        if not self.exists(ref.storage_key):
            raise ResultNotFound(
                f"result s3://{bucket}/{key} not found: it was deleted, expired by a bucket "
                f"lifecycle rule, or written to another installation",
                uri=f"s3://{bucket}/{key}",
            )
        url = self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )
        return PresignedTransfer(url, "GET", expires_in)

    # ------------------------------------------------------------------ read

    def load(self, ref: ResultRef, *, payload_key: PayloadKey | None = None) -> Any:
        """The value a reference points at (inline or in S3).

        A pickle is unpickled only once its MAC checks out with ``payload_key``.
        Raises :class:`ResultNotFound` when the S3 object is missing,
        :class:`~runtime.payload_auth.PayloadAuthenticationError` for a pickle
        without a valid MAC (or without a key to check it), and
        :class:`~runtime.serializers.SerializationError` when the payload is corrupt.
        """
        return open_payload(ref, self.load_bytes(ref), payload_key)

    def load_bytes(self, ref: ResultRef) -> bytes:
        """The serialized bytes a reference points at, not deserialized.

        Raises :class:`ResultNotFound` when the S3 object is missing,
        :class:`~runtime.serializers.SerializationError` when an inline pickle is
        not valid base64, and ValueError for a reference with neither form.
        """
        if ref.inline is not None:
            return inline_bytes(ref)
        get_serializer(ref.serializer)
        if not ref.storage_key:
            raise ValueError("the result reference has neither an inline value nor a storage key")
        return self.read_bytes(ref.storage_key)

    def read_bytes(self, storage_key: str) -> bytes:
        """The raw stored payload of an ``s3://`` URI or a storage key (ResultNotFound if gone)."""
        bucket, key = self._locate(storage_key)
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise ResultNotFound(
                    f"result s3://{bucket}/{key} not found ({code}): it was deleted, "
                    f"expired by a bucket lifecycle rule, or written to another installation",
                    uri=f"s3://{bucket}/{key}",
                ) from exc
            raise
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def exists(self, storage_key: str) -> bool:
        """Whether a result is stored under ``storage_key`` (a storage key or an s3:// URI)."""
        bucket, key = self._locate(storage_key)
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                return False
            raise
        return True
