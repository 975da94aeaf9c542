"""``stratoflow.yaml``, the project file: Prefect's ``prefect.yaml`` shape, checked line by line.

The shape follows Prefect's docs (docs/v3/how-to-guides/deployments/prefect-yaml.mdx)::

    name: my-project                 # bookkeeping, optional
    definitions: {...}               # anchors to reuse (&name / *name / <<: *name)
    deployments:
      - name: nightly
        entrypoint: flows/etl.py:etl  # relative to this file's directory
        parameters: {count: 3}
        work_pool: {name: "{{ $POOL }}", work_queue_name: null, job_variables: {}}
        tags: [etl]
        version: "1"
        description: ...
        concurrency_limit: 2          # or {limit: 2, collision_strategy: CANCEL_NEW}
        enforce_parameter_schema: true
        paused: false
        schedules: [{cron: "0 3 * * *", timezone: Europe/Paris}, {interval: 600}]

``{{ $NAME }}`` is replaced by the environment variable ``NAME`` (one file serves
dev, staging and prod). Unknown keys, values of the wrong type, an unset variable and
references this installation cannot resolve (Prefect's step outputs, blocks and
variables; ``build``/``push``/``pull`` steps) are :class:`ProjectFileError` naming the
file and the line. The file is read with PyYAML's composer (safe: plain YAML types
only), which keeps each node's line, so errors point at the exact place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from runtime.errors import InvalidInput

__all__ = [
    "PROJECT_FILE",
    "DeploymentSpec",
    "ProjectFile",
    "ProjectFileError",
    "load_project_file",
]

PROJECT_FILE = "stratoflow.yaml"
"""The project file's default name (``stratoflow deploy`` looks for it in the current directory)."""

_TOP_KEYS = {"name", "prefect-version", "stratoflow-version", "definitions", "deployments"}
_STEP_KEYS = {"build", "push", "pull"}
_DEPLOYMENT_KEYS = {
    "name",
    "entrypoint",
    "parameters",
    "work_pool",
    "tags",
    "version",
    "description",
    "concurrency_limit",
    "enforce_parameter_schema",
    "paused",
    "schedules",
}
_POOL_KEYS = {"name", "work_queue_name", "job_variables"}
_LIMIT_KEYS = {"limit", "collision_strategy", "grace_period_seconds"}
_SCHEDULE_KEYS = {
    "cron",
    "interval",
    "anchor_date",
    "timezone",
    "day_or",
    "active",
    "parameters",
    "rrule",
}
_REFERENCE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_ENV = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class ProjectFileError(InvalidInput):
    """The project file is not valid; the message starts with ``<file>:<line>:``."""


@dataclass
class DeploymentSpec:
    """One entry of ``deployments:``, its templates resolved (``line``: where it starts)."""

    name: str
    entrypoint: str
    line: int
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    version: str | None = None
    description: str | None = None
    concurrency_limit: int | None = None
    collision_strategy: str | None = None
    enforce_parameter_schema: bool = True
    paused: bool = False
    schedules: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ProjectFile:
    """A parsed project file: where it is (entrypoints are relative to ``root``) and its entries."""

    path: Path
    deployments: list[DeploymentSpec]

    @property
    def root(self) -> Path:
        """The project's directory (the file's)."""
        return self.path.parent

    def select(self, names: list[str]) -> list[DeploymentSpec]:
        """The deployments named (``name`` or ``flow/name`` patterns are not needed: plain names).

        An unknown name is a :class:`ProjectFileError` listing the names the file has.
        """
        found = {d.name: d for d in self.deployments}
        missing = [n for n in names if n not in found]
        if missing:
            raise ProjectFileError(
                f"{self.path}: no deployment named {', '.join(map(repr, missing))} "
                f"(the file has: {', '.join(found) or 'none'})",
                field="name",
            )
        return [found[n] for n in names]


class _Reader:
    """Turns composed YAML nodes into values, resolving templates, with line-marked errors."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        self.scalars = yaml.SafeLoader("")  # type: ignore[no-untyped-call]

    def error(self, node: yaml.Node | None, message: str) -> ProjectFileError:
        line = node.start_mark.line + 1 if node is not None else 1
        return ProjectFileError(f"{self.path}:{line}: {message}", line=line, file=str(self.path))

    # ---------------------------------------------------------------- plain values

    def value(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return {key: self.value(child) for key, (_, child) in self.mapping(node).items()}
        if isinstance(node, yaml.SequenceNode):
            return [self.value(child) for child in node.value]
        assert isinstance(node, yaml.ScalarNode)
        value = self.scalars.construct_object(node, deep=True)  # type: ignore[no-untyped-call]
        if isinstance(value, str):
            return self.template(node, value)
        return value

    def template(self, node: yaml.Node, text: str) -> str:
        def resolve(match: re.Match[str]) -> str:
            ref = match.group(1)
            env = _ENV.match(ref)
            if env is None:
                raise self.error(
                    node,
                    f"cannot resolve {match.group(0)!r}: only environment variables "
                    "('{{ $NAME }}') can be referenced here (Prefect's step outputs, blocks "
                    "and variables are not available)",
                )
            name = env.group(1)
            if name not in self.env:
                raise self.error(
                    node, f"environment variable {name} is not set ({{{{ ${name} }}}})"
                )
            return self.env[name]

        return _REFERENCE.sub(resolve, text)

    def mapping(
        self, node: yaml.Node, what: str = "this"
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """``{key: (key node, value node)}``, with ``<<`` merges applied (later keys win)."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping (key: value)")
        merged: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        own: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for source in sources:
                    merged.update(self.mapping(source, "a '<<' merge"))
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise self.error(key_node, "keys must be strings")
            if key in own:
                raise self.error(key_node, f"{key!r} is given twice")
            own[key] = (key_node, value_node)
        return {**merged, **own}

    def check_keys(
        self, entries: dict[str, tuple[yaml.Node, yaml.Node]], allowed: set[str], where: str
    ) -> None:
        for key, (key_node, _) in entries.items():
            if key not in allowed:
                raise self.error(
                    key_node,
                    f"unknown key {key!r} in {where} (allowed: {', '.join(sorted(allowed))})",
                )

    def typed(self, node: yaml.Node, kind: type | tuple[type, ...], what: str) -> Any:
        value = self.value(node)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(node, f"{what} must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise self.error(node, f"{what} must be {_kind_name(kind)}, not {value!r}")
        return value

    # ---------------------------------------------------------------- the file

    def deployment(self, node: yaml.Node) -> DeploymentSpec:
        entries = self.mapping(node, "each entry of 'deployments'")
        label = "a deployment"
        if "name" in entries:
            label = f"deployment {self.value(entries['name'][1])!r}"
        for step in _STEP_KEYS & set(entries):
            self.no_steps(entries[step], step)
        self.check_keys(entries, _DEPLOYMENT_KEYS | _STEP_KEYS, label)
        for required in ("name", "entrypoint"):
            if required not in entries or self.value(entries[required][1]) in (None, ""):
                raise self.error(node, f"{label} has no {required!r}")
        spec = DeploymentSpec(
            name=str(self.typed(entries["name"][1], str, "name")),
            entrypoint=str(self.typed(entries["entrypoint"][1], str, "entrypoint")),
            line=node.start_mark.line + 1,
        )
        get = entries.get
        if (n := get("parameters")) is not None:
            spec.parameters = self.typed(n[1], dict, "parameters") or {}
        if (n := get("tags")) is not None:
            tags = self.typed(n[1], list, "tags") or []
            for child, tag in zip(n[1].value, tags, strict=True):
                if not isinstance(tag, str):
                    raise self.error(child, f"tags must be strings, not {tag!r}")
            spec.tags = tags
        if (n := get("version")) is not None:
            version = self.typed(n[1], (str, int, float), "version")
            spec.version = None if version is None else str(version)
        if (n := get("description")) is not None:
            spec.description = self.typed(n[1], str, "description")
        if (n := get("enforce_parameter_schema")) is not None:
            spec.enforce_parameter_schema = bool(self.typed(n[1], bool, "enforce_parameter_schema"))
        if (n := get("paused")) is not None:
            spec.paused = bool(self.typed(n[1], bool, "paused"))
        if (n := get("work_pool")) is not None:
            self.work_pool(n[1], spec)
        if (n := get("concurrency_limit")) is not None:
            self.concurrency(n[1], spec)
        if (n := get("schedules")) is not None and self.value(n[1]) is not None:
            if not isinstance(n[1], yaml.SequenceNode):
                raise self.error(n[1], "schedules must be a list")
            spec.schedules = [self.schedule(child) for child in n[1].value]
        return spec

    def no_steps(self, entry: tuple[yaml.Node, yaml.Node], step: str) -> None:
        value = self.value(entry[1])
        if value not in (None, []):
            raise self.error(
                entry[0],
                f"'{step}' steps are not supported: deploy packs the project directory into a "
                "code bundle (or give work_pool.job_variables.image for code baked into an "
                "image); remove this section",
            )

    def work_pool(self, node: yaml.Node, spec: DeploymentSpec) -> None:
        if self.value(node) is None:
            return
        entries = self.mapping(node, "work_pool")
        self.check_keys(entries, _POOL_KEYS, "work_pool")
        if (n := entries.get("name")) is not None:
            spec.work_pool_name = self.typed(n[1], str, "work_pool.name")
        if (n := entries.get("work_queue_name")) is not None:
            spec.work_queue_name = self.typed(n[1], str, "work_pool.work_queue_name")
        if (n := entries.get("job_variables")) is not None:
            spec.job_variables = self.typed(n[1], dict, "work_pool.job_variables") or {}

    def concurrency(self, node: yaml.Node, spec: DeploymentSpec) -> None:
        if isinstance(node, yaml.MappingNode):
            entries = self.mapping(node, "concurrency_limit")
            self.check_keys(entries, _LIMIT_KEYS, "concurrency_limit")
            if "limit" not in entries:
                raise self.error(node, "concurrency_limit needs 'limit'")
            limit_node = entries["limit"][1]
            if (n := entries.get("collision_strategy")) is not None:
                strategy = self.typed(n[1], str, "concurrency_limit.collision_strategy")
                if strategy not in ("ENQUEUE", "CANCEL_NEW"):
                    raise self.error(
                        n[1], f"collision_strategy must be ENQUEUE or CANCEL_NEW, not {strategy!r}"
                    )
                spec.collision_strategy = strategy
        else:
            limit_node = node
        limit = self.typed(limit_node, int, "concurrency_limit")
        if limit is not None and limit < 0:
            raise self.error(limit_node, f"concurrency_limit must be >= 0, not {limit}")
        spec.concurrency_limit = limit

    def schedule(self, node: yaml.Node) -> dict[str, Any]:
        entries = self.mapping(node, "each schedule")
        self.check_keys(entries, _SCHEDULE_KEYS, "a schedule")
        if "rrule" in entries:
            raise self.error(entries["rrule"][0], "rrule schedules are not supported: use cron")
        kinds = [k for k in ("cron", "interval") if k in entries]
        if len(kinds) != 1:
            raise self.error(node, "a schedule needs exactly one of 'cron' or 'interval'")
        body: dict[str, Any] = {}
        if "cron" in entries:
            body["cron"] = self.typed(entries["cron"][1], str, "cron")
            if (n := entries.get("day_or")) is not None:
                body["day_or"] = self.typed(n[1], bool, "day_or")
        else:
            body["interval"] = self.interval(entries["interval"][1])
            if (n := entries.get("anchor_date")) is not None:
                anchor = self.value(n[1])
                body["anchor_date"] = anchor if isinstance(anchor, str) else str(anchor)
        if (n := entries.get("timezone")) is not None:
            body["timezone"] = self.typed(n[1], str, "timezone")
        schedule: dict[str, Any] = {"schedule": body}
        if (n := entries.get("active")) is not None:
            schedule["active"] = self.typed(n[1], bool, "active")
        if (n := entries.get("parameters")) is not None:
            schedule["parameters"] = self.typed(n[1], dict, "schedule parameters") or {}
        return schedule

    def interval(self, node: yaml.Node) -> float:
        """Seconds, an ISO 8601 duration (``PT10M``) or ``H:MM:SS`` (Prefect's three forms)."""
        value = self.value(node)
        seconds: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            iso = _ISO_DURATION.match(value)
            if iso and any(iso.groupdict().values()):
                parts = {k: float(v or 0) for k, v in iso.groupdict().items()}
                seconds = timedelta(
                    days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
                ).total_seconds()
            elif re.fullmatch(r"\d+:\d{1,2}:\d{1,2}(\.\d+)?", value):
                h, m, s = value.split(":")
                seconds = int(h) * 3600 + int(m) * 60 + float(s)
        if seconds is None or seconds <= 0:
            raise self.error(
                node,
                f"interval must be a positive number of seconds, an ISO 8601 duration "
                f"(PT10M) or H:MM:SS, not {value!r}",
            )
        return seconds


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        dict: "a mapping",
        list: "a list",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_project_file(path: Path, env: Mapping[str, str] | None = None) -> ProjectFile:
    """Parse and check ``path``; ``env`` (default ``os.environ``) resolves ``{{ $NAME }}``.

    Raises :class:`ProjectFileError` (``<file>:<line>: ...``) for anything it cannot
    accept, and when two deployments share a name.
    """
    path = Path(path).resolve()
    reader = _Reader(path, os.environ if env is None else env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectFileError(f"{path}: no such file", file=str(path)) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ProjectFileError(
            f"{path}:{line}: not valid YAML: {exc.problem or exc}", line=line, file=str(path)
        ) from None
    if root is None:
        raise reader.error(None, "the file is empty: it needs a 'deployments:' list")
    entries = reader.mapping(root, "the file")
    for step in _STEP_KEYS & set(entries):
        reader.no_steps(entries[step], step)
    reader.check_keys(entries, _TOP_KEYS | _STEP_KEYS, "the file")
    if "deployments" not in entries:
        raise reader.error(root, "the file has no 'deployments:' list")
    listed = entries["deployments"][1]
    if not isinstance(listed, yaml.SequenceNode):
        raise reader.error(listed, "'deployments' must be a list")
    deployments: list[DeploymentSpec] = []
    seen: dict[str, int] = {}
    for node in listed.value:
        spec = reader.deployment(node)
        if spec.name in seen:
            raise reader.error(
                node, f"deployment {spec.name!r} is defined twice (first at line {seen[spec.name]})"
            )
        seen[spec.name] = spec.line
        deployments.append(spec)
    return ProjectFile(path, deployments)
