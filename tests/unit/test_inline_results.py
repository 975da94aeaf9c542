"""Results kept inline in their reference: what fits, how it is encoded, and back."""

from __future__ import annotations

import pickle

import pytest

from runtime.inline_results import inline_bytes, inline_ref
from runtime.serializers import SerializationError
from runtime.states import ResultRef


def test_json_stays_text_and_pickle_base64() -> None:
    ref = inline_ref(b'{"a": 1}', "json", 100)
    assert ref == ResultRef(serializer="json", inline='{"a": 1}', size=8)
    data = pickle.dumps({1, 2})
    ref = inline_ref(data, "pickle", 1000)
    assert ref is not None and ref.inline != data.decode("latin-1")
    assert inline_bytes(ref) == data and ref.size == len(data)


def test_the_bound_applies_to_the_encoded_text() -> None:
    data = b"\x00" * 30  # base64 of 30 bytes is 40 characters
    assert inline_ref(data, "pickle", 40) is not None
    assert inline_ref(data, "pickle", 39) is None
    assert inline_ref(b"[1]", "json", 2) is None


def test_json_that_is_not_utf8_is_not_inlined() -> None:
    assert inline_ref(b'"\xff"', "json", 100) is None


def test_decoding_refuses_what_is_not_inline_or_not_base64() -> None:
    with pytest.raises(ValueError, match="not inline"):
        inline_bytes(ResultRef(serializer="json", storage_key="s3://b/results/x"))
    with pytest.raises(SerializationError, match="not valid base64"):
        inline_bytes(ResultRef(serializer="pickle", inline="%%%"))


def test_an_unknown_serializer_is_refused() -> None:
    with pytest.raises(ValueError):
        inline_ref(b"1", "yaml", 100)
