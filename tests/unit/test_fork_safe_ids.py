"""Ids drawn in a forked child differ from the parent's (a real ``os.fork()``).

A PRNG seeded once per process hands a forked child the parent's state, so both
draw the same ids: the HTTP client then picks the same run id in two processes
and returns another process's run as its own, and two processes' log lines get
the same key (one overwrites the other).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from runtime.log_ids import new_log_id
from runtime.models import new_id

COUNT = 50


def _draw_in_child(draw: Callable[[], str]) -> list[str]:
    """Fork; the child draws ``COUNT`` values and writes them to a pipe; return them."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "w") as out:
                json.dump([draw() for _ in range(COUNT)], out)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    values: list[str] = json.loads(text)
    return values


@pytest.mark.parametrize("draw", [new_id, new_log_id], ids=["new_id", "new_log_id"])
def test_a_forked_child_draws_other_ids_than_its_parent(draw: Callable[[], str]) -> None:
    draw()  # the parent has drawn before forking, as a running engine has
    child = _draw_in_child(draw)
    parent = [draw() for _ in range(COUNT)]
    assert len(set(child)) == COUNT
    assert not set(child) & set(parent)


def test_two_forked_children_draw_different_ids() -> None:
    first = _draw_in_child(new_id)
    second = _draw_in_child(new_id)
    assert not set(first) & set(second)
