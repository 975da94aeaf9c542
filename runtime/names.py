"""Names: readable generated run names (``brave-otter``) and what any name may contain."""

from __future__ import annotations

import random
import unicodedata

_ADJECTIVES = [
    "amber",
    "brave",
    "calm",
    "daring",
    "eager",
    "fancy",
    "gentle",
    "hardy",
    "icy",
    "jolly",
    "keen",
    "lively",
    "mellow",
    "nimble",
    "olive",
    "proud",
    "quick",
    "rapid",
    "silent",
    "tidy",
    "urban",
    "vivid",
    "witty",
    "young",
    "zesty",
    "bold",
    "crimson",
    "dusty",
    "golden",
    "hidden",
    "lucky",
    "misty",
    "noble",
    "polite",
    "rustic",
    "sunny",
    "tender",
    "velvet",
    "wise",
]
_ANIMALS = [
    "otter",
    "falcon",
    "heron",
    "lynx",
    "marten",
    "newt",
    "ocelot",
    "panda",
    "quail",
    "raven",
    "salmon",
    "tapir",
    "urchin",
    "viper",
    "walrus",
    "yak",
    "zebra",
    "badger",
    "beaver",
    "bison",
    "camel",
    "coyote",
    "dingo",
    "eagle",
    "ferret",
    "gecko",
    "hare",
    "ibis",
    "jackal",
    "koala",
    "lemur",
    "moose",
    "narwhal",
    "orca",
    "puffin",
    "robin",
    "seal",
    "toucan",
    "wombat",
]


def generate_name(rng: random.Random | None = None) -> str:
    """A name like ``brave-otter``."""
    r = rng or random
    return f"{r.choice(_ADJECTIVES)}-{r.choice(_ANIMALS)}"


_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Control, format (bidi overrides, zero-width), surrogate and line/paragraph separators."""


def check_printable(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` naming its first control or format character.

    Names and tags are echoed by terminals and UIs: ``\\x1b[31m``, ``\\x00``, a bidi
    override (``\\u202e``) or a zero-width character would recolour, truncate or
    disguise what people read. Printable Unicode (accents, CJK, emoji) and spaces
    are kept.
    """
    if value.isprintable():  # fast path: only plain spaces among the separators
        return value
    for position, char in enumerate(value):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise ValueError(
                f"contains the control or format character U+{ord(char):04X} at position "
                f"{position}: names and tags must be printable"
            )
    return value


def dedupe(values: list[str]) -> list[str]:
    """``values`` without repeats, first occurrences in order (how tags are stored)."""
    return list(dict.fromkeys(values)) if len(set(values)) != len(values) else values


def escape_unprintable(value: str) -> str:
    """``value`` with each control or format character written as its escape (``\\x1b``).

    For names the engine renders from parameters (``flow_run_name="load-{path}"``):
    a parameter holding a newline must not make the run impossible to record.
    """
    if value.isprintable():
        return value
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in _REFUSED_CATEGORIES
        else char
        for char in value
    )
