"""Results small enough to live inline in their reference: encoding and decoding.

Pure functions (no AWS client), shared by the stores (:class:`runtime.results.ResultStore`)
and the HTTP client, which keeps small results inline without any request.
"""

from __future__ import annotations

import base64
import binascii

from runtime.serializers import SerializationError, get_serializer
from runtime.states import ResultRef

__all__ = ["inline_bytes", "inline_ref"]


def inline_ref(data: bytes, serializer: str, max_bytes: int) -> ResultRef | None:
    """``data`` kept inline in a reference, or None when it does not fit ``max_bytes``.

    Inline, a ``json`` payload is kept as its UTF-8 text (None if it is not UTF-8) and
    anything else as base64; ``max_bytes`` bounds that text. ValueError for an unknown
    serializer.
    """
    ser = get_serializer(serializer)
    text: str | None
    if ser.name == "json":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    else:
        text = base64.b64encode(data).decode()
    if len(text.encode("utf-8")) > max_bytes:
        return None
    return ResultRef(serializer=ser.name, inline=text, size=len(data))


def inline_bytes(ref: ResultRef) -> bytes:
    """The serialized bytes of an inline reference (the reverse of :func:`inline_ref`).

    Raises :class:`~runtime.serializers.SerializationError` when an inline pickle is not
    valid base64, ValueError when ``ref`` is not inline.
    """
    ser = get_serializer(ref.serializer)
    if ref.inline is None:
        raise ValueError("the result reference is not inline")
    if ser.name == "json":
        return ref.inline.encode("utf-8")
    try:
        return base64.b64decode(ref.inline.encode(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SerializationError(
            f"the inline pickle result is not valid base64: {exc}", serializer=ser.name
        ) from exc
