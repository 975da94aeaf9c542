"""``flow.deploy(...)`` and ``Flow.from_source(source, entrypoint)``: register a deployment.

What a deployment stores (Prefect: src/prefect/flows.py ``Flow.deploy`` and
``Flow.from_source``; docs/v3/deploy/index.mdx): the flow's entrypoint
(``path/to/file.py:function``, relative to the code's directory), the JSON schema of
its parameters, and where the worker finds the code:

* by default an **S3 bundle** (:mod:`runtime.bundles`): the directory holding the
  entrypoint, packed deterministically and stored once per content hash;
* ``image="..."``: the code is baked into the worker's image (nothing uploaded; the
  entrypoint is relative to the image's working directory);
* ``push=False``: the code is already at this directory where the worker runs
  (Prefect's ``path``): nothing uploaded.

The deployment goes through the same backend as ``get_client()``: the stores (the
embedded default and direct AWS access, through :mod:`runtime.services.deployments`)
or the HTTP API (``STRATOFLOW_API_URL``), which takes no code bundles.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from runtime.bundles import BundleError
from runtime.errors import InvalidInput, NotFound
from runtime.models import BundleRef, DeploymentCreate, DeploymentSchedule

if TYPE_CHECKING:
    from runtime.bundles import Bundle
    from runtime.engine.flows import Flow
    from runtime.models import Deployment
    from runtime.project_file import ProjectFile
    from runtime.stores import Stores

__all__ = [
    "ConcurrencyLimitConfig",
    "DeploymentError",
    "FlowSource",
    "deploy_flow",
    "deploy_project",
    "flow_from_source",
    "load_flow_from_entrypoint",
]


class DeploymentError(InvalidInput):
    """A deployment cannot be made from what was given; nothing was stored."""


@dataclass(frozen=True)
class FlowSource:
    """Where a flow's code came from: a local directory, or an existing bundle."""

    entrypoint: str
    directory: Path | None = None
    bundle: BundleRef | None = None


_SOURCE_ATTR = "_stratoflow_source"


# ---------------------------------------------------------------------- entrypoints


def _split_entrypoint(entrypoint: str) -> tuple[str, str]:
    target, sep, attr = entrypoint.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise DeploymentError(
            f"entrypoint {entrypoint!r} is not 'path/to/file.py:flow_function' "
            "or 'package.module:flow_function'",
            field="entrypoint",
        )
    return target, attr


def entrypoint_file(directory: Path, entrypoint: str) -> Path:
    """The file an entrypoint names under ``directory`` (DeploymentError when it is missing)."""
    target, _ = _split_entrypoint(entrypoint)
    if target.endswith(".py"):
        path = Path(target) if Path(target).is_absolute() else directory / target
    else:
        parts = target.split(".")
        path = directory.joinpath(*parts).with_suffix(".py")
        if not path.is_file():
            path = directory.joinpath(*parts, "__init__.py")
    if not path.is_file():
        raise DeploymentError(
            f"entrypoint {entrypoint!r}: no file {path} in {directory}", field="entrypoint"
        )
    return path


@contextmanager
def _on_sys_path(directory: Path) -> Iterator[None]:
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(str(directory))


def load_flow_from_entrypoint(directory: Path, entrypoint: str) -> Flow[..., Any]:
    """Import the flow ``entrypoint`` names, with ``directory`` on ``sys.path``.

    A file path is executed as a module of its own name (its ``__main__`` block does
    not run); a dotted path is imported. A missing file, a module that fails to
    import, or a name that is not a flow: DeploymentError saying which.
    """
    from runtime.engine.flows import Flow

    target, attr = _split_entrypoint(entrypoint)
    path = entrypoint_file(directory, entrypoint)
    with _on_sys_path(directory):
        try:
            if target.endswith(".py"):
                name = f"_stratoflow_entrypoint_{uuid.uuid4().hex}"
                spec = importlib.util.spec_from_file_location(name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                finally:
                    sys.modules.pop(name, None)
            else:
                module = importlib.import_module(target)
        except Exception as exc:
            raise DeploymentError(
                f"entrypoint {entrypoint!r}: importing {path} failed: {type(exc).__name__}: {exc}",
                field="entrypoint",
            ) from exc
    found = getattr(module, attr, None)
    if found is None:
        raise DeploymentError(
            f"entrypoint {entrypoint!r}: {path} has no {attr!r}", field="entrypoint"
        )
    if not isinstance(found, Flow):
        raise DeploymentError(
            f"entrypoint {entrypoint!r}: {attr!r} is a {type(found).__name__}, not a flow "
            "(decorate it with @flow)",
            field="entrypoint",
        )
    return found


def _looks_remote(source: str) -> bool:
    lowered = source.lower()
    return lowered.startswith(
        ("http://", "https://", "git@", "git+", "ssh://", "gs://", "az://")
    ) or lowered.endswith(".git")


def flow_from_source(source: str | Path | BundleRef, entrypoint: str) -> Flow[..., Any]:
    """Prefect's ``Flow.from_source``: the flow ``entrypoint`` names in ``source``.

    ``source`` is a local directory, or a code location already stored (a
    :class:`~runtime.models.BundleRef` or its ``s3://`` URI: it is downloaded,
    verified and unpacked into the local bundle cache first). A git or other remote
    URL is refused: this installation reaches no network but AWS. The returned flow
    remembers its source: its ``deploy()`` stores that directory (or bundle) as the
    code location.
    """
    bundle: BundleRef | None = None
    if isinstance(source, str) and source.startswith("s3://"):
        source = _stored_bundle(source)
    if isinstance(source, BundleRef):
        from runtime.bundles import materialize

        bundle = source
        directory = materialize(_Target().stores("read a stored bundle"), source, _cache_dir())
    else:
        text = str(source)
        if _looks_remote(text):
            raise DeploymentError(
                f"source {text!r}: remote sources (git, http) are not supported; clone it "
                "and pass the local directory, or bake the code into the worker image",
                field="source",
            )
        directory = Path(text).expanduser().resolve()
        if not directory.is_dir():
            raise DeploymentError(f"source {text!r} is not a directory here", field="source")
    flow = load_flow_from_entrypoint(directory, entrypoint)
    setattr(flow, _SOURCE_ATTR, FlowSource(entrypoint, directory, bundle))
    return flow


def _stored_bundle(uri: str) -> BundleRef:
    """The :class:`BundleRef` of a bundle ``deploy`` stored (``s3://.../bundles/<sha256>.zip``)."""
    import re

    from botocore.exceptions import ClientError

    from runtime.results import parse_s3_uri

    match = re.search(r"(?:^|/)bundles/([0-9a-f]{64})\.zip$", uri)
    if match is None:
        raise DeploymentError(
            f"source {uri!r}: an S3 source must be a stored code bundle, "
            "s3://<bucket>/bundles/<sha256>.zip",
            field="source",
        )
    bucket, key = parse_s3_uri(uri)
    stores = _Target().stores("read a stored bundle")
    try:
        head = stores.results.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise DeploymentError(f"source {uri!r}: no such bundle ({exc})", field="source") from None
    return BundleRef(uri=uri, sha256=match.group(1), size=int(head["ContentLength"]))


def _cache_dir() -> Path:
    return Path.home() / ".stratoflow" / "bundles"


def _source_of(flow: Flow[..., Any]) -> FlowSource:
    """Where ``flow`` was loaded from, or its own file's directory and ``file.py:name``."""
    known = getattr(flow, _SOURCE_ATTR, None)
    if isinstance(known, FlowSource):
        return known
    fn = flow.fn
    try:
        file = inspect.getsourcefile(fn)
    except TypeError:
        file = None
    if file is None or not Path(file).is_file():
        raise DeploymentError(
            f"flow {flow.name!r} has no source file to deploy (defined interactively?): "
            "put it in a file, or use Flow.from_source(directory, 'file.py:function')",
            field="entrypoint",
        )
    path = Path(file).resolve()
    module = sys.modules.get(fn.__module__)
    attr = fn.__name__
    if module is None or getattr(module, attr, None) is not flow:
        names = [n for n, v in vars(module or object()).items() if v is flow]
        if not names:
            raise DeploymentError(
                f"flow {flow.name!r} is not a module-level name of {path}: a worker could "
                "not import it (define it at the top level of the file)",
                field="entrypoint",
            )
        attr = names[0]
    return FlowSource(f"{path.name}:{attr}", path.parent)


# ---------------------------------------------------------------------- the backend


class _Target:
    """Where a deployment is written: the stores, or the HTTP API (as ``get_client()``)."""

    def __init__(self) -> None:
        from sdk.client import ApiSyncClient, get_client

        with get_client(sync_client=True) as client:
            self.client = client
        self.api = client.api if isinstance(client, ApiSyncClient) else None

    def stores(self, purpose: str) -> Stores:
        if self.api is not None:
            raise DeploymentError(
                f"cannot {purpose} through the HTTP API: unset STRATOFLOW_API_URL and use "
                "direct AWS access (STRATOFLOW_PREFIX and AWS credentials)"
            )
        stores: Stores = self.client.stores
        return stores

    def check_pool(self, name: str) -> None:
        try:
            if self.api is not None:
                self.api.read_work_pool(name)
            else:
                self.client.stores.registry.read_work_pool(name)
        except NotFound:
            raise DeploymentError(
                f"work pool {name!r} does not exist: create it first "
                f"(stratoflow work-pool create {name})",
                field="work_pool_name",
            ) from None

    def upload(self, bundle: Bundle) -> BundleRef:
        self.check_can_upload()
        from runtime.bundles import upload

        return upload(self.client.stores, bundle)

    def check_can_upload(self) -> None:
        """Bundles go straight to S3: refused (saying what works) through the API."""
        if self.api is not None:
            raise BundleError(
                "the Stratoflow API does not receive code bundles (no upload route: API "
                "Gateway caps a request at 10 MB). Deploy in direct-AWS mode (unset "
                "STRATOFLOW_API_URL; set STRATOFLOW_PREFIX and AWS credentials that may "
                "s3:PutObject to the results bucket), bake the code into the worker image "
                "(image=...), or deploy with push=False when the code is already at this "
                "directory on the worker",
                field="code_bundle",
            )

    def upsert(self, request: DeploymentCreate) -> Deployment:
        if self.api is not None:
            deployment: Deployment = self.api.create_deployment(request)
            return deployment
        from runtime.services.deployments import upsert_deployment

        return upsert_deployment(self.client.stores, request)[0]


# ---------------------------------------------------------------------- deploy


def _check_bundled(bundle: Bundle, source: FlowSource) -> None:
    """The entrypoint's file must be in the bundle (``.stratoflowignore`` may leave it out)."""
    assert source.directory is not None
    file = entrypoint_file(source.directory, source.entrypoint).resolve()
    relative = file.relative_to(source.directory.resolve()).as_posix()
    if relative not in bundle.files:
        raise DeploymentError(
            f"entrypoint {source.entrypoint!r}: {relative} is not in the bundle (left out by "
            f"{source.directory / '.stratoflowignore'}, or a skipped directory): the worker "
            "could not load the flow",
            field="entrypoint",
        )


def _schedules(
    schedules: list[Any] | None, cron: str | None, interval: float | timedelta | None
) -> list[DeploymentSchedule]:
    """Prefect's ``schedules=[...]``, ``cron=`` and ``interval=`` as deployment schedules."""
    found = [
        s if isinstance(s, DeploymentSchedule) else DeploymentSchedule.model_validate(s)
        for s in schedules or []
    ]
    if cron is not None:
        found.append(DeploymentSchedule.model_validate({"schedule": {"cron": cron}}))
    if interval is not None:
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
        found.append(DeploymentSchedule.model_validate({"schedule": {"interval": seconds}}))
    return found


@dataclass(frozen=True)
class ConcurrencyLimitConfig:
    """Prefect's detailed ``concurrency_limit``: a limit and what happens to a run over it."""

    limit: int
    collision_strategy: str = "ENQUEUE"


def _limit(value: int | ConcurrencyLimitConfig | None) -> tuple[int | None, dict[str, Any]]:
    """The limit and, when the model has it, the collision strategy field."""
    if not isinstance(value, ConcurrencyLimitConfig):
        return value, {}
    if value.collision_strategy not in ("ENQUEUE", "CANCEL_NEW"):
        raise DeploymentError(
            f"collision_strategy must be ENQUEUE or CANCEL_NEW, not {value.collision_strategy!r}",
            field="concurrency_limit.collision_strategy",
        )
    if "collision_strategy" in DeploymentCreate.model_fields:
        return value.limit, {"collision_strategy": value.collision_strategy}
    if value.collision_strategy != "ENQUEUE":
        raise DeploymentError(
            "this installation's deployments have no collision strategy yet: only ENQUEUE",
            field="concurrency_limit.collision_strategy",
        )
    return value.limit, {}


def _check_defaults(parameters: dict[str, Any], schema: dict[str, Any]) -> None:
    """The deployment's parameters must fit the schema (required ones may come per run)."""
    from runtime.services.deployments import validate_parameters

    validate_parameters(parameters, {k: v for k, v in schema.items() if k != "required"})


def deploy_flow(
    flow: Flow[..., Any],
    name: str,
    work_pool_name: str | None = None,
    image: str | None = None,
    build: bool = True,
    push: bool = True,
    work_queue_name: str | None = None,
    job_variables: dict[str, Any] | None = None,
    interval: float | timedelta | None = None,
    cron: str | None = None,
    schedules: list[Any] | None = None,
    concurrency_limit: int | ConcurrencyLimitConfig | None = None,
    parameters: dict[str, Any] | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    version: str | None = None,
    enforce_parameter_schema: bool = True,
    paused: bool | None = None,
    print_next_steps: bool = True,
) -> uuid.UUID:
    """Create or update the deployment ``flow.name``/``name``; its id (Prefect's ``deploy``).

    See the module docstring for the code location. ``build`` is accepted for
    Prefect's signature: Stratoflow never builds an image (``image`` names one that
    exists). Errors (no work pool, an unknown one, an entrypoint the code does not
    hold, parameters outside the schema, a bundle over the size limit, a bundle in API
    mode) are :class:`DeploymentError`/:class:`~runtime.bundles.BundleError` raised
    before anything is stored.
    """
    from runtime.bundles import pack
    from runtime.settings import get_settings

    del build  # images are never built here (see the docstring)
    if not work_pool_name:
        raise DeploymentError(
            "a work pool name is required: deploy(..., work_pool_name='default')",
            field="work_pool_name",
        )
    source = _source_of(flow)
    schema = flow.parameters.model_dump_for_openapi()
    params = dict(parameters or {})
    if enforce_parameter_schema:
        _check_defaults(params, schema)
    job_vars = dict(job_variables or {})
    if image is not None:
        job_vars["image"] = image
    limit, strategy = _limit(concurrency_limit)
    try:  # every field checked before anything is uploaded or written
        request = DeploymentCreate(
            name=name,
            flow_name=flow.name,
            entrypoint=source.entrypoint,
            description=description or flow.description,
            version=version or flow.version,
            tags=list(tags or []),
            parameters=params,
            parameter_openapi_schema=schema,
            enforce_parameter_schema=enforce_parameter_schema,
            work_pool_name=work_pool_name,
            work_queue_name=work_queue_name,
            job_variables=job_vars,
            schedules=_schedules(schedules, cron, interval),
            concurrency_limit=limit,
            paused=bool(paused),
            empirical_policy=flow.retry_policy(),
            **strategy,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'deployment'}: {e['msg']}"
            for e in exc.errors()
        )
        raise DeploymentError(f"invalid deployment: {problems}") from None
    target = _Target()
    target.check_pool(work_pool_name)
    if image is None and source.bundle is not None:
        request.code_bundle = source.bundle
    elif image is None and source.directory is not None:
        entrypoint_file(source.directory, source.entrypoint)  # the code must hold it
        if push:
            target.check_can_upload()  # before packing what could not be sent
            bundle = pack(source.directory, max_bytes=get_settings().bundle_max_bytes)
            try:
                _check_bundled(bundle, source)
                request.code_bundle = target.upload(bundle)
            finally:
                bundle.archive.unlink(missing_ok=True)
        else:
            request.path = str(source.directory)
    deployment = target.upsert(request)
    if print_next_steps:
        print(
            f"Deployment '{deployment.flow_name}/{deployment.name}' ({deployment.id}) is on "
            f"work pool {work_pool_name!r}. Start a worker: stratoflow worker start --pool "
            f"{work_pool_name}; run it: stratoflow deployment run "
            f"'{deployment.flow_name}/{deployment.name}'"
        )
    return uuid.UUID(deployment.id)


def deploy_project(
    project: ProjectFile, names: list[str] | None = None, *, print_next_steps: bool = True
) -> list[tuple[str, uuid.UUID]]:
    """Deploy the project file's deployments (all, or those ``names``): ``[(name, id)]``.

    Each entrypoint is relative to the file's directory, which is the code bundled
    (Prefect: entrypoints are relative to the project's root). A
    ``work_pool.job_variables.image`` means the code is in that image (no bundle).
    Every entry is loaded and checked before the first one is written, so a broken
    entry leaves the registry as it was.
    """
    specs = project.deployments if names is None else project.select(names)
    loaded = []
    for spec in specs:
        try:
            flow = flow_from_source(project.root, spec.entrypoint)
        except DeploymentError as exc:
            raise DeploymentError(
                f"{project.path}:{spec.line}: deployment {spec.name!r}: {exc.message}",
                **exc.details,
            ) from None
        loaded.append((spec, flow))
    target = _Target()
    for spec, _ in loaded:
        where = f"{project.path}:{spec.line}: deployment {spec.name!r}"
        if not spec.work_pool_name:
            raise DeploymentError(f"{where}: no work_pool.name", field="work_pool.name")
        try:
            target.check_pool(spec.work_pool_name)
        except DeploymentError as exc:
            raise DeploymentError(f"{where}: {exc.message}", **exc.details) from None
    done: list[tuple[str, uuid.UUID]] = []
    for spec, flow in loaded:
        image = spec.job_variables.get("image")
        limit: int | ConcurrencyLimitConfig | None = spec.concurrency_limit
        if spec.concurrency_limit is not None and spec.collision_strategy is not None:
            limit = ConcurrencyLimitConfig(spec.concurrency_limit, spec.collision_strategy)
        deployment_id = deploy_flow(
            flow,
            spec.name,
            spec.work_pool_name,
            image=image if isinstance(image, str) else None,
            work_queue_name=spec.work_queue_name,
            job_variables={k: v for k, v in spec.job_variables.items() if k != "image"},
            schedules=spec.schedules,
            concurrency_limit=limit,
            parameters=spec.parameters,
            description=spec.description,
            tags=spec.tags,
            version=spec.version,
            enforce_parameter_schema=spec.enforce_parameter_schema,
            paused=spec.paused,
            print_next_steps=print_next_steps,
        )
        done.append((spec.name, deployment_id))
    return done
