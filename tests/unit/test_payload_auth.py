"""Authenticated pickles (``runtime.payload_auth``): seal, open, keys and where they live."""

from __future__ import annotations

import ast
import os
import stat
import threading
from pathlib import Path

import cloudpickle
import pytest

from runtime.payload_auth import (
    MAGIC,
    PayloadAuthenticationError,
    PayloadKey,
    PayloadKeyError,
    default_key_file,
    key_source,
    load_key_file,
    needs_mac,
)
from runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]
KEY = PayloadKey.from_text("a" * 64, source="tests")
OTHER = PayloadKey.from_text("b" * 64, source="elsewhere")


class TestSealAndOpen:
    def test_round_trip(self) -> None:
        data = cloudpickle.dumps({"x": {1, 2}})
        sealed = KEY.seal(data)
        assert sealed.startswith(MAGIC) and sealed.endswith(data)
        assert KEY.open(sealed) == data

    def test_missing_mac_is_refused(self) -> None:
        with pytest.raises(PayloadAuthenticationError, match="has no MAC") as err:
            KEY.open(cloudpickle.dumps(1), what="the cache record for key k")
        assert err.value.details["reason"] == "missing"
        assert "the cache record for key k failed authentication" in err.value.message
        with pytest.raises(PayloadAuthenticationError, match="has no MAC"):
            KEY.open(MAGIC + b"short")

    def test_altered_bytes_are_refused(self) -> None:
        sealed = bytearray(KEY.seal(cloudpickle.dumps("fine")))
        sealed[-3] ^= 0x01
        with pytest.raises(PayloadAuthenticationError, match="does not match") as err:
            KEY.open(bytes(sealed))
        assert err.value.details["reason"] == "mismatch"

    def test_another_keys_mac_is_refused_and_named(self) -> None:
        with pytest.raises(PayloadAuthenticationError, match=OTHER.key_id) as err:
            KEY.open(OTHER.seal(b"data"))
        assert err.value.details == {"reason": "other_key", "key_id": OTHER.key_id}

    def test_a_forged_header_with_the_right_key_id_is_refused(self) -> None:
        forged = KEY.seal(b"x")[: len(MAGIC) + 8] + b"\x00" * 32 + cloudpickle.dumps(1)
        with pytest.raises(PayloadAuthenticationError, match="does not match"):
            KEY.open(forged)

    def test_the_serializer_is_bound(self) -> None:
        with pytest.raises(PayloadAuthenticationError, match="does not match"):
            KEY.open(KEY.seal(b"[1]", "pickle"), "other")

    def test_only_json_goes_without_a_mac(self) -> None:
        assert not needs_mac("json")
        assert needs_mac("pickle")

    def test_repr_never_shows_the_key(self) -> None:
        key = PayloadKey.from_text("s3cr3t-" * 8, source="key file /k")
        assert "s3cr3t" not in repr(key) and "s3cr3t" not in str(key)
        assert key.key_id not in ("", "s3cr3t")

    def test_short_keys_are_refused(self) -> None:
        with pytest.raises(PayloadKeyError, match="too short"):
            PayloadKey.from_text("short", source="a file")


class TestKeyFile:
    def test_created_once_with_mode_0600_and_reused(self, tmp_path: Path) -> None:
        path = tmp_path / "keys" / "p.key"
        first = load_key_file(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert len(path.read_text().strip()) == 64
        assert load_key_file(path).key_id == first.key_id
        assert "key file" in first.source and str(path) in first.source

    def test_racing_creators_agree_on_one_key(self, tmp_path: Path) -> None:
        path = tmp_path / "race.key"
        ids: list[str] = []
        barrier = threading.Barrier(8)

        def create() -> None:
            barrier.wait()
            ids.append(load_key_file(path).key_id)

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 1 and len(ids) == 8
        assert [p.name for p in tmp_path.iterdir()] == ["race.key"]  # no temp files left

    def test_a_file_others_can_read_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "loose.key"
        path.write_text("c" * 64)
        os.chmod(path, 0o644)
        with pytest.raises(PayloadKeyError, match="chmod 600"):
            load_key_file(path)

    def test_missing_file_without_create(self, tmp_path: Path) -> None:
        with pytest.raises(PayloadKeyError, match="cannot read"):
            load_key_file(tmp_path / "none.key", create=False)


class TestKeySource:
    @pytest.fixture(autouse=True)
    def _clean(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in (
            "AWS_ENDPOINT_URL",
            "STRATOFLOW_PREFIX",
            "STRATOFLOW_API_URL",
            "STRATOFLOW_PAYLOAD_KEY_FILE",
            "STRATOFLOW_PAYLOAD_KEY_SECRET",
        ):
            monkeypatch.delenv(name, raising=False)

    def test_embedded_default_is_a_file_per_prefix(self) -> None:
        kind, where = key_source(Settings(prefix="demo"))
        assert (kind, where) == ("file", str(default_key_file("demo")))
        assert where.endswith(os.path.join(".stratoflow", "payload-keys", "demo.key"))

    def test_local_endpoints_use_the_file(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
        assert key_source(Settings(prefix="dev"))[0] == "file"
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        assert key_source(Settings(api_url="http://127.0.0.1:4200"))[0] == "file"

    def test_aws_uses_the_prefixs_secret(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("STRATOFLOW_PREFIX", "prod")
        assert key_source(Settings(prefix="prod")) == ("secret", "prod/payload-key")
        monkeypatch.delenv("STRATOFLOW_PREFIX")
        api = "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
        assert key_source(Settings(prefix="xy", api_url=api)) == ("secret", "xy/payload-key")

    def test_explicit_settings_win(self, tmp_path: Path) -> None:
        path = tmp_path / "k"
        assert key_source(Settings(payload_key_file=path)) == ("file", str(path))
        assert key_source(Settings(payload_key_secret="arn:aws:secretsmanager:x")) == (
            "secret",
            "arn:aws:secretsmanager:x",
        )


def test_the_api_handlers_never_load_the_payload_key() -> None:
    """No module under handlers/ imports runtime.payload_auth or names a loader of the key."""
    offenders = []
    for path in (REPO / "handlers").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Name | ast.Attribute):
                names = [getattr(node, "id", None) or getattr(node, "attr", "")]
            if any("payload_auth" in n or "payload_key" in n for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []
