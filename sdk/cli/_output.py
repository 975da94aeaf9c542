"""Output helpers shared by every command: JSON, rich tables, errors on stderr.

Everything printed here may hold stored data (names, tags, messages, parameters)
that anyone with API access wrote, so nothing reaches the terminal raw:

* control characters (ESC, NUL, BEL, ...), Unicode format characters (the
  bidirectional overrides ``U+202E`` and friends, zero-width characters) and
  line/paragraph separators are shown as ``\\x1b`` / ``\\u202e`` escapes
  (:func:`safe`); log messages keep their newlines and tabs, nothing else does;
* rich never interprets stored text as markup: tables and messages are given
  :class:`rich.text.Text` objects, not markup strings;
* JSON output escapes every non-ASCII and control character (``ensure_ascii``).
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Exit codes: 1 for errors the API (or the stack) reports, 2 for bad usage.
EXIT_ERROR = 1
EXIT_USAGE = 2


#: Unicode categories never printed raw: controls, format characters (bidi overrides,
#: zero-width), line and paragraph separators, surrogates and unassigned code points.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control/format character shown as a visible escape.

    ``keep_newlines`` keeps ``\\n`` and ``\\t`` (multi-line log messages); every
    other unsafe character, including ``\\r`` (which could overwrite a line), is escaped.
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for char in text:
        if keep_newlines and char in "\n\t":
            out.append(char)
        elif unicodedata.category(char) in UNSAFE_CATEGORIES:
            out.append(_escape_char(char))
        else:
            out.append(char)
    return "".join(out)


def plain(text: str, style: str | None = None) -> Text:
    """A rich :class:`Text` of ``text`` made :func:`safe`: never parsed as markup."""
    return Text(safe(text), style=style or "")


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    console = Console(file=stream, stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output: don't fold 36-character ids at 80 columns.
        console = Console(file=stream, stderr=stderr, width=200)
    return console


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data for a pydantic model, a list of them, or plain data."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout, and nothing else."""
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2, default=str, ensure_ascii=True) + "\n")
    sys.stdout.flush()


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A rich table on stdout (``-`` for empty cells)."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        no_wrap = column in ("ID", "NAME", "TAG")
        table.add_column(column, no_wrap=no_wrap, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*[plain(fmt(cell)) for cell in row])
        count += 1
    console = _console()
    if count == 0:
        console.print(plain(f"No {title.lower() if title else 'items'} found."))
        return
    console.print(table)


def print_fields(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    """Key/value lines for ``inspect`` (rich table without header)."""
    table = Table(title=plain(title), title_justify="left", show_header=False, box=None)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in fields:
        table.add_row(plain(name), plain(fmt(value)))
    _console().print(table)


def say(message: str, style: str | None = None) -> None:
    """A human message on stdout: made :func:`safe`, never parsed as markup."""
    _console().print(plain(message, style), highlight=False)


def echo(line: str) -> None:
    """One raw line on stdout (no rich wrapping), newlines and tabs kept, the rest escaped."""
    sys.stdout.write(safe(line, keep_newlines=True) + "\n")
    sys.stdout.flush()


def fmt(value: Any) -> str:
    """A cell: ``-`` for None/empty, ISO times without microseconds, JSON for structures."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict | list):
        return json.dumps(to_jsonable(value), default=str, ensure_ascii=False)
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"), default=str, ensure_ascii=False)
    return str(value)


def error(message: str) -> None:
    """``Error: message`` on stderr (markup-free, control characters escaped)."""
    sys.stdout.flush()
    sys.stderr.write(f"Error: {safe(message)}\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    """``Warning: message`` on stderr (control characters escaped)."""
    sys.stdout.flush()
    sys.stderr.write(f"Warning: {safe(message)}\n")
    sys.stderr.flush()


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Report an error on stderr and exit with ``code`` (1: API/stack error, 2: usage)."""
    error(message)
    raise typer.Exit(code)


def usage_error(message: str) -> NoReturn:
    """A usage error: exit code 2, as click does for its own."""
    fail(message, EXIT_USAGE)
