"""Authenticated pickles: an HMAC over every pickled payload, with a per-installation key.

Unpickling runs code chosen by whoever wrote the bytes, and cache records and
results can be written by anyone who may call the API. So every ``pickle``
payload the engine stores (a cache record's result, a persisted result, inline
or in S3) is *sealed*: prefixed with a MAC computed with a key that only the
engine holds, and the engine *opens* (verifies) it before it unpickles
anything. ``json`` payloads are never executed and carry no MAC.

The sealed form (the bytes stored inline, base64, or as the S3 object)::

    b"\\x00SFMAC1"  (7 bytes, never the start of a pickle or of JSON)
    key id          (8 bytes: a fingerprint of the key, not the key)
    tag             (32 bytes: HMAC-SHA256(key, b"stratoflow-payload-v1\\0" +
                     serializer + b"\\0" + payload))
    payload         (the serializer's bytes)

The API stores and returns these bytes as they are and never holds the key, so
an API caller can copy a sealed payload but cannot make a new one.

Where the key comes from (:func:`load_payload_key`, once per engine client):

* ``STRATOFLOW_PAYLOAD_KEY_FILE``: that file;
* ``STRATOFLOW_PAYLOAD_KEY_SECRET``: that Secrets Manager secret (name or ARN);
* otherwise, in AWS (no ``AWS_ENDPOINT_URL``, and either ``STRATOFLOW_PREFIX``
  set or an API URL that is not on loopback): the secret ``<prefix>/payload-key``
  that the stack declares (:mod:`runtime.resources`);
* otherwise (the embedded default, ``stratoflow dev``, moto or LocalStack):
  the key file ``~/.stratoflow/payload-keys/<prefix>.key``, created with mode
  0600 on first use.

A key is at least 32 characters of text (the file holds 64 hex digits); its
UTF-8 bytes are the HMAC key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from runtime.errors import StratoflowError

__all__ = [
    "MAGIC",
    "PayloadAuthenticationError",
    "PayloadKey",
    "PayloadKeyError",
    "default_key_file",
    "generate_key_text",
    "key_source",
    "load_key_file",
    "load_key_secret",
    "load_payload_key",
    "needs_mac",
]

MAGIC = b"\x00SFMAC1"
"""The first bytes of a sealed payload."""

_KEY_ID_BYTES = 8
_TAG_BYTES = 32
_HEADER_BYTES = len(MAGIC) + _KEY_ID_BYTES + _TAG_BYTES
_DOMAIN = b"stratoflow-payload-v1\x00"
MIN_KEY_CHARS = 32
"""The shortest key text accepted."""


class PayloadAuthenticationError(StratoflowError):
    """A pickled payload has no valid MAC: it is refused, never unpickled."""

    status_code = 422
    error_type = "payload_authentication_failed"


class PayloadKeyError(StratoflowError):
    """The payload key cannot be loaded (missing secret, unreadable or unsafe key file)."""

    status_code = 500
    error_type = "payload_key_error"


def needs_mac(serializer: str) -> bool:
    """True for serializers whose loading can run code (everything but ``json``)."""
    return serializer != "json"


def generate_key_text() -> str:
    """A fresh random key: 64 hex digits (256 bits)."""
    return secrets.token_hex(32)


@dataclass(frozen=True)
class PayloadKey:
    """The installation's payload key; ``source`` says where it came from (for messages).

    Its repr shows the key id and the source, never the key.
    """

    secret: bytes = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_CHARS:
            raise PayloadKeyError(
                f"the payload key from {self.source or 'the caller'} is too short: "
                f"at least {MIN_KEY_CHARS} characters are needed"
            )

    @classmethod
    def from_text(cls, text: str, source: str = "") -> PayloadKey:
        """The key whose text is ``text`` (surrounding whitespace ignored)."""
        return cls(text.strip().encode("utf-8"), source)

    @property
    def key_id(self) -> str:
        """A public fingerprint of the key (16 hex digits), stored in every sealed payload."""
        return self._key_id().hex()

    def _key_id(self) -> bytes:
        return hashlib.sha256(b"stratoflow-payload-key-id\x00" + self.secret).digest()[
            :_KEY_ID_BYTES
        ]

    def _tag(self, serializer: str, payload: bytes) -> bytes:
        message = _DOMAIN + serializer.encode("utf-8") + b"\x00" + payload
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def seal(self, payload: bytes, serializer: str = "pickle") -> bytes:
        """``payload`` with its MAC in front (the form that is stored)."""
        return MAGIC + self._key_id() + self._tag(serializer, payload) + payload

    def open(self, sealed: bytes, serializer: str = "pickle", *, what: str = "payload") -> bytes:
        """The payload inside ``sealed`` once its MAC checks out.

        Raises :class:`PayloadAuthenticationError` naming ``what`` when the MAC is
        missing, was made with another key, or does not match the bytes.
        """
        if not sealed.startswith(MAGIC) or len(sealed) < _HEADER_BYTES:
            raise PayloadAuthenticationError(
                f"{what} failed authentication: it has no MAC (it was not written by a "
                f"Stratoflow engine holding this installation's payload key); refusing "
                f"to unpickle it",
                reason="missing",
            )
        key_id = sealed[len(MAGIC) : len(MAGIC) + _KEY_ID_BYTES]
        tag = sealed[len(MAGIC) + _KEY_ID_BYTES : _HEADER_BYTES]
        payload = sealed[_HEADER_BYTES:]
        if not hmac.compare_digest(key_id, self._key_id()):
            raise PayloadAuthenticationError(
                f"{what} failed authentication: it was sealed with payload key "
                f"{key_id.hex()}, not this installation's key {self.key_id}; refusing to "
                f"unpickle it",
                reason="other_key",
                key_id=key_id.hex(),
            )
        if not hmac.compare_digest(tag, self._tag(serializer, payload)):
            raise PayloadAuthenticationError(
                f"{what} failed authentication: its MAC does not match its bytes (it was "
                f"altered or forged); refusing to unpickle it",
                reason="mismatch",
            )
        return payload


# ----------------------------------------------------------------------------- loading


def default_key_file(prefix: str) -> Path:
    """Where the local key of installation ``prefix`` lives by default."""
    return Path.home() / ".stratoflow" / "payload-keys" / f"{prefix}.key"


def load_key_file(path: Path | str, *, create: bool = True) -> PayloadKey:
    """The key in ``path``; created (mode 0600, parent 0700) when missing and ``create``.

    Refuses a file that others than its owner may read or write (like ssh does
    with private keys), and a key shorter than 32 characters.
    """
    path = Path(path).expanduser()
    if create and not path.exists():
        _create_key_file(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise PayloadKeyError(
            f"cannot read the payload key file {path}: {exc.strerror or exc}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PayloadKeyError(
            f"the payload key file {path} is accessible by other users (mode "
            f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )
    return PayloadKey.from_text(text, source=f"key file {path}")


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` atomically (mode 0600); keep the one another process made."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(generate_key_text() + "\n")
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)  # atomic, unlike writing the final file in place
    finally:
        tmp.unlink(missing_ok=True)


def load_key_secret(client: Any, secret_id: str) -> PayloadKey:
    """The key held in the Secrets Manager secret ``secret_id`` (name or ARN)."""
    from botocore.exceptions import ClientError

    try:
        response = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise PayloadKeyError(
            f"cannot read the payload key secret {secret_id!r} ({code}): provision the "
            f"stack, or give the engine's role secretsmanager:GetSecretValue on it"
        ) from None
    text = response.get("SecretString")
    if not text:
        raise PayloadKeyError(f"the payload key secret {secret_id!r} holds no SecretString")
    return PayloadKey.from_text(text, source=f"secret {secret_id}")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def key_source(settings: Any) -> tuple[Literal["file", "secret"], str]:
    """``("file", path)`` or ``("secret", name)``: where ``settings``' payload key lives."""
    from runtime.resources import specs

    if settings.payload_key_file:
        return "file", str(settings.payload_key_file)
    if settings.payload_key_secret:
        return "secret", settings.payload_key_secret
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    in_aws = not endpoint and (
        (settings.api_url and not _is_loopback(settings.api_url))
        or (not settings.api_url and settings.backend() == "aws")
    )
    if in_aws:
        return "secret", specs(settings.prefix).payload_key.name
    return "file", str(default_key_file(settings.prefix))


def load_payload_key(settings: Any = None, *, session: Any = None) -> PayloadKey:
    """The payload key for ``settings`` (default: the process settings); see the module doc.

    ``session`` is the boto3 session used to read a secret (default: a new one).
    """
    if settings is None:
        from runtime.settings import get_settings

        settings = get_settings()
    kind, where = key_source(settings)
    if kind == "file":
        return load_key_file(where)
    if session is None:
        import boto3

        session = boto3.session.Session(region_name=settings.region)
    return load_key_secret(session.client("secretsmanager"), where)
