"""Code bundles: a deployment's directory packed as a zip, stored in S3 by content hash.

``deploy`` packs the directory holding a flow's entrypoint (:func:`pack`), skipping
what ``.stratoflowignore`` (gitignore syntax) names and always ``.git``,
``__pycache__`` and ``.venv``; the archive is deterministic (members sorted, fixed
timestamps and modes) so the same tree always gives the same SHA-256. It is stored
once per hash at ``s3://<results bucket>/bundles/<sha256>.zip`` (:func:`upload`:
a ``HEAD`` first). A worker calls :func:`materialize`: download, verify the hash,
unpack (refusing absolute paths, ``..`` and links), then one atomic rename into the
cache, so two workers unpacking the same bundle at once both end with one copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from pathspec import GitIgnoreSpec

from runtime.errors import InvalidInput
from runtime.models import BundleRef

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "ALWAYS_SKIPPED",
    "BUNDLE_PREFIX",
    "IGNORE_FILE",
    "Bundle",
    "BundleError",
    "bundle_key",
    "collect_files",
    "materialize",
    "pack",
    "upload",
]

IGNORE_FILE = ".stratoflowignore"
"""The file (at the bundle's root) listing what a bundle leaves out, in gitignore syntax."""

ALWAYS_SKIPPED = frozenset({".git", "__pycache__", ".venv"})
"""Directory names never packed, wherever they are."""

BUNDLE_PREFIX = "bundles/"
"""Key prefix of bundles in the results bucket."""

#: Every member gets this timestamp (the earliest a zip can hold): same tree, same bytes.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_COMPRESSION_LEVEL = 6
_CHUNK = 1024 * 1024


class BundleError(InvalidInput):
    """A bundle cannot be built, stored or unpacked; the message says why and what to do."""


@dataclass(frozen=True)
class Bundle:
    """A packed bundle: the archive file on disk, its hash and size, and what it holds."""

    archive: Path
    sha256: str
    size: int
    files: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Its object key in the results bucket."""
        return bundle_key(self.sha256)


def bundle_key(sha256: str) -> str:
    """``bundles/<sha256>.zip``."""
    return f"{BUNDLE_PREFIX}{sha256}.zip"


def _ignore_spec(root: Path) -> GitIgnoreSpec | None:
    ignore = root / IGNORE_FILE
    if not ignore.is_file():
        return None
    lines = ignore.read_text(encoding="utf-8").splitlines()
    return GitIgnoreSpec.from_lines(lines)


def _ignored(spec: GitIgnoreSpec | None, rel: str) -> bool:
    return spec is not None and bool(spec.match_file(rel))


def collect_files(root: Path) -> list[tuple[str, Path]]:
    """The files a bundle of ``root`` holds: ``(posix relative path, path)``, sorted.

    Leaves out what ``.stratoflowignore`` matches (a directory it matches is not
    entered) and the :data:`ALWAYS_SKIPPED` directories. A symbolic link is packed
    as the file it points to when that file is inside ``root``; one pointing out of
    the tree is a :class:`BundleError` (its content is not the project's to ship).
    """
    root = root.resolve()
    if not root.is_dir():
        raise BundleError(f"cannot bundle {root}: not a directory", path=str(root))
    spec = _ignore_spec(root)
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        keep: list[str] = []
        for name in sorted(dirnames):
            path = here / name
            if name in ALWAYS_SKIPPED or _ignored(spec, prefix + name + "/"):
                continue
            if path.is_symlink():
                _check_link(root, path, prefix + name)
                found.extend(_linked_dir_files(root, path, prefix + name, spec))
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            rel = prefix + name
            path = here / name
            if _ignored(spec, rel):
                continue
            if path.is_symlink():
                _check_link(root, path, rel)
            if path.is_file():
                found.append((rel, path))
    found.sort(key=lambda item: item[0])
    return found


def _check_link(root: Path, path: Path, rel: str) -> None:
    target = path.resolve()
    if not target.is_relative_to(root):
        raise BundleError(
            f"{rel} is a link to {target}, outside the bundled directory {root}: copy the "
            f"file in, or list {rel} in {IGNORE_FILE}",
            path=rel,
        )


def _linked_dir_files(
    root: Path, link: Path, rel: str, spec: GitIgnoreSpec | None
) -> Iterator[tuple[str, Path]]:
    """The files under a linked directory inside the tree, under the link's name."""
    target = link.resolve()
    for dirpath, dirnames, filenames in os.walk(target, followlinks=False):
        here = Path(dirpath)
        sub = here.relative_to(target).as_posix()
        prefix = rel + "/" + ("" if sub == "." else sub + "/")
        dirnames[:] = [
            d
            for d in sorted(dirnames)
            if d not in ALWAYS_SKIPPED and not _ignored(spec, prefix + d + "/")
        ]
        for name in filenames:
            if not _ignored(spec, prefix + name) and (here / name).is_file():
                yield prefix + name, here / name


def _biggest(files: list[tuple[str, Path]], count: int = 5) -> str:
    sizes = sorted(((p.stat().st_size, rel) for rel, p in files), reverse=True)[:count]
    return ", ".join(f"{rel} ({_human(size)})" for size, rel in sizes)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class _SizeCapped:
    """A write-only file wrapper that raises once more than ``limit`` bytes were written."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self.limit:
            raise _TooBig(self.written)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.raw.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def flush(self) -> None:
        self.raw.flush()


class _TooBig(Exception):
    def __init__(self, written: int) -> None:
        self.written = written


def pack(root: Path, *, max_bytes: int, workdir: Path | None = None) -> Bundle:
    """Pack ``root`` into a deterministic zip (in ``workdir``, default a temp dir).

    Members are sorted by path, stamped 1980-01-01, mode 0644 (0755 when the file is
    executable), deflated at one fixed level: the same tree gives the same bytes and
    hash. More than ``max_bytes`` of archive is a :class:`BundleError` naming the
    size reached and the biggest files (nothing is kept).
    """
    root = root.resolve()
    files = collect_files(root)
    out_dir = Path(workdir or tempfile.mkdtemp(prefix="stratoflow-bundle-"))
    archive = out_dir / f"bundle-{uuid.uuid4().hex}.zip"
    try:
        with archive.open("wb") as raw:
            capped = _SizeCapped(raw, max_bytes)
            with zipfile.ZipFile(
                capped,  # type: ignore[call-overload]
                "w",
                compression=zipfile.ZIP_DEFLATED,
                compresslevel=_COMPRESSION_LEVEL,
            ) as zf:
                for rel, path in files:
                    info = zipfile.ZipInfo(rel, date_time=_FIXED_TIME)
                    mode = 0o755 if os.access(path, os.X_OK) else 0o644
                    info.external_attr = (stat.S_IFREG | mode) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with path.open("rb") as src, zf.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
    except _TooBig as big:
        archive.unlink(missing_ok=True)
        raise BundleError(
            f"the bundle of {root} is over STRATOFLOW_BUNDLE_MAX_BYTES ({_human(max_bytes)}): "
            f"it reached {_human(big.written)} before packing stopped; biggest files: "
            f"{_biggest(files)}. List what the flow does not need in {root / IGNORE_FILE} "
            "(gitignore syntax), raise the limit, or bake the code into the worker image "
            "(deploy with image=...)",
            size=big.written,
            max_bytes=max_bytes,
        ) from None
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    digest = hashlib.sha256()
    with archive.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return Bundle(archive, digest.hexdigest(), archive.stat().st_size, [rel for rel, _ in files])


def upload(stores: Stores, bundle: Bundle) -> BundleRef:
    """Store the bundle once per hash (``HEAD`` first); its :class:`BundleRef`."""
    from botocore.exceptions import ClientError

    s3 = stores.results.s3
    bucket = stores.results.bucket
    key = bundle.key
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in {"404", "NoSuchKey", "NotFound"}:
            raise
        with bundle.archive.open("rb") as body:
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/zip",
                Metadata={"stratoflow-sha256": bundle.sha256},
            )
    return BundleRef(uri=f"s3://{bucket}/{key}", sha256=bundle.sha256, size=bundle.size)


# ---------------------------------------------------------------------------- materialize


def _safe_member(name: str, external_attr: int) -> str:
    """The member's path, or a :class:`BundleError` when unpacking it could escape."""
    if stat.S_ISLNK(external_attr >> 16):
        raise BundleError(f"the bundle holds a link ({name!r}); bundles hold regular files only")
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"the bundle holds an absolute path ({name!r}); refusing to unpack it")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise BundleError(f"the bundle holds a path leaving its directory ({name!r})")
    return name


def _unpack(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = _safe_member(info.filename, info.external_attr)
            target = (dest / name).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise BundleError(f"the bundle holds a path leaving its directory ({name!r})")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            mode = (info.external_attr >> 16) & 0o777
            target.chmod(0o755 if mode & 0o111 else 0o644)


def _download(stores: Stores, ref: BundleRef, into: Path) -> None:
    from botocore.exceptions import ClientError

    from runtime.results import parse_s3_uri

    bucket, key = parse_s3_uri(ref.uri)
    try:
        body = stores.results.s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}:
            raise BundleError(
                f"code bundle {ref.uri} not found ({code}): deploy the flow again",
                uri=ref.uri,
            ) from exc
        raise
    try:
        with into.open("wb") as fh:
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                fh.write(chunk)
    finally:
        body.close()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def materialize(stores: Stores, ref: BundleRef, cache_dir: Path) -> Path:
    """The directory holding the unpacked bundle ``ref``: ``<cache_dir>/<sha256>``.

    Already there: returned at once (no request). Otherwise the archive is
    downloaded into a private temporary name, its SHA-256 checked against
    ``ref.sha256`` (a mismatch is a :class:`BundleError` and nothing is cached),
    unpacked into a private directory (absolute paths, ``..`` and links refused)
    and renamed into place in one step. Two processes doing this at once both
    succeed: the loser of the rename discards its copy and uses the winner's.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / ref.sha256
    if final.is_dir():
        return final
    private = cache_dir / f".tmp-{ref.sha256[:16]}-{uuid.uuid4().hex}"
    private.mkdir()
    try:
        archive = private / "bundle.zip"
        _download(stores, ref, archive)
        actual = _sha256_of(archive)
        if actual != ref.sha256:
            raise BundleError(
                f"code bundle {ref.uri} does not match its hash: expected sha256 {ref.sha256}, "
                f"got {actual} ({archive.stat().st_size} bytes); it was changed after deploy, "
                "deploy the flow again",
                uri=ref.uri,
                expected=ref.sha256,
                actual=actual,
            )
        tree = private / "tree"
        tree.mkdir()
        try:
            _unpack(archive, tree)
        except zipfile.BadZipFile as exc:
            raise BundleError(f"code bundle {ref.uri} is not a valid zip: {exc}") from None
        try:
            os.rename(tree, final)  # atomic; fails when another process got there first
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return final
