"""Packing code bundles: ignore rules, deterministic hashes, the size limit, unsafe archives.

The behaviour follows Prefect's deployment storage idea (docs/v3/deploy/index.mdx: the
code a worker needs is stored with the deployment and pulled before the run), with
``.stratoflowignore`` read like ``.prefectignore`` (gitignore syntax, see
src/prefect/utilities/filesystem.py ``filter_files``).
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from runtime.bundles import BundleError, _unpack, collect_files, pack


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _names(root: Path) -> list[str]:
    return [rel for rel, _ in collect_files(root)]


def test_always_skips_git_pycache_and_venv(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "flow.py": "x = 1\n",
            ".git/HEAD": "ref\n",
            "pkg/__pycache__/m.cpython-311.pyc": b"\0",
            "pkg/m.py": "",
            ".venv/lib/site.py": "",
        },
    )
    assert _names(tmp_path) == ["flow.py", "pkg/m.py"]


def test_stratoflowignore_uses_gitignore_rules(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            ".stratoflowignore": "# data we do not ship\ndata/\n*.csv\n!keep.csv\n/top.txt\n",
            "flow.py": "",
            "data/big.bin": b"\1" * 10,
            "sub/data/also.bin": b"\1",  # data/ matches at any depth (no leading slash)
            "a.csv": "",
            "keep.csv": "",
            "top.txt": "",
            "sub/top.txt": "",  # /top.txt is anchored at the root
        },
    )
    assert _names(tmp_path) == [".stratoflowignore", "flow.py", "keep.csv", "sub/top.txt"]


def test_same_tree_same_hash_whatever_the_mtimes(tmp_path: Path) -> None:
    files = {"flow.py": "def f(): ...\n", "pkg/a.py": "A = 1\n", "pkg/b.txt": "b"}
    one = _tree(tmp_path / "one", files)
    two = _tree(tmp_path / "two", dict(reversed(list(files.items()))))
    os.utime(two / "pkg" / "a.py", (1_000_000, 1_000_000))
    first = pack(one, max_bytes=10**6, workdir=tmp_path)
    second = pack(two, max_bytes=10**6, workdir=tmp_path)
    assert first.sha256 == second.sha256
    assert first.archive.read_bytes() == second.archive.read_bytes()
    (two / "pkg" / "a.py").write_text("A = 2\n")
    assert pack(two, max_bytes=10**6, workdir=tmp_path).sha256 != first.sha256


def test_archive_members_are_sorted_with_fixed_times(tmp_path: Path) -> None:
    _tree(tmp_path / "src", {"b.py": "", "a/z.py": "", "a/b.py": ""})
    bundle = pack(tmp_path / "src", max_bytes=10**6, workdir=tmp_path)
    with zipfile.ZipFile(bundle.archive) as zf:
        assert zf.namelist() == ["a/b.py", "a/z.py", "b.py"]
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_over_the_limit_names_size_and_biggest_files(tmp_path: Path) -> None:
    src = _tree(
        tmp_path / "src",
        {"flow.py": "", "model.bin": os.urandom(300_000), "small.bin": os.urandom(20_000)},
    )
    with pytest.raises(BundleError) as err:
        pack(src, max_bytes=100_000, workdir=tmp_path)
    message = str(err.value)
    assert "STRATOFLOW_BUNDLE_MAX_BYTES" in message
    assert "97.7 KB" in message  # the limit, in readable units
    assert "model.bin (293.0 KB)" in message
    assert message.index("model.bin") < message.index("small.bin")
    assert not list(tmp_path.glob("bundle-*.zip"))  # nothing left behind


def test_link_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    src = _tree(tmp_path / "src", {"flow.py": ""})
    (src / "leak.txt").symlink_to(outside)
    with pytest.raises(BundleError, match=r"leak\.txt is a link to .*outside"):
        collect_files(src)


def test_link_inside_the_tree_is_packed_as_a_file(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"flow.py": "", "real/data.txt": "d"})
    (src / "alias.txt").symlink_to(src / "real" / "data.txt")
    assert _names(src) == ["alias.txt", "flow.py", "real/data.txt"]


def _evil_zip(path: Path, name: str, *, link: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd" if link else "pwned")
    return path


@pytest.mark.parametrize(
    ("name", "link", "message"),
    [
        ("../escape.py", False, "leaving its directory"),
        ("a/../../escape.py", False, "leaving its directory"),
        ("/abs/escape.py", False, "absolute path"),
        ("C:/escape.py", False, "absolute path"),
        ("a\\..\\escape.py", False, "absolute path"),
        ("innocent.py", True, "link"),
    ],
)
def test_unpacking_refuses_escapes(tmp_path: Path, name: str, link: bool, message: str) -> None:
    archive = _evil_zip(tmp_path / "evil.zip", name, link=link)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError, match=message):
        _unpack(archive, dest)
    assert not (tmp_path / "escape.py").exists()
