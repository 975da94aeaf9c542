"""``flow.deploy`` / ``Flow.from_source(...).deploy`` against moto, and ``materialize``.

Prefect's behaviour is the reference: ``Flow.deploy`` returns the deployment's UUID and
stores the entrypoint and the parameter schema (src/prefect/flows.py ``deploy``;
docs/v3/deploy/index.mdx); ``Flow.from_source(source, entrypoint)`` loads the flow from
its code location first (src/prefect/flows.py ``from_source``). Stratoflow's default
code location is a content-addressed S3 bundle (issue 10, item 1).
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.bundles import BundleError, bundle_key, materialize
from runtime.engine.client import DirectEngineClient
from runtime.models import WorkPoolCreate
from runtime.stores import Stores
from sdk import Flow
from sdk.deployments.deploy import DeploymentError

FLOW_FILE = textwrap.dedent(
    '''
    from sdk import flow

    @flow(name="greeter")
    def greet(name: str, times: int = 2) -> str:
        """Say hello.

        Args:
            name: who to greet
        """
        return " ".join(["hello " + name] * times)
    '''
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "hello.py").write_text(FLOW_FILE)
    (root / "flows" / "helper.py").write_text("X = 1\n")
    (root / "flows" / "data.csv").write_text("a,b\n")
    (root / "flows" / ".stratoflowignore").write_text("*.csv\n")
    return root


@pytest.fixture
def pool(stores: Stores, engine: DirectEngineClient) -> str:
    stores.registry.create_work_pool(WorkPoolCreate(name="local"))
    return "local"


class S3Calls:
    """Counts S3 operations made through the stores' client (botocore events)."""

    def __init__(self, s3: Any) -> None:
        self.counts: dict[str, int] = {}
        s3.meta.events.register("before-call.s3.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] = self.counts.get(model.name, 0) + 1


def _bundle_keys(stores: Stores) -> list[str]:
    listed = stores.results.s3.list_objects_v2(Bucket=stores.results.bucket, Prefix="bundles/")
    return [obj["Key"] for obj in listed.get("Contents", [])]


def test_from_source_deploy_stores_schema_entrypoint_and_bundle(
    stores: Stores, pool: str, project: Path
) -> None:
    """The deployment holds the entrypoint, the schema and the bundle, uploaded once per hash."""
    calls = S3Calls(stores.results.s3)
    flow = Flow.from_source(project / "flows", "hello.py:greet")
    first = flow.deploy(
        "nightly", work_pool_name=pool, parameters={"name": "ops"}, tags=["a"], version="7"
    )
    assert isinstance(first, uuid.UUID)
    deployment = stores.registry.read_deployment(str(first))
    assert (deployment.flow_name, deployment.name) == ("greeter", "nightly")
    assert deployment.entrypoint == "hello.py:greet"
    assert deployment.path is None
    schema = deployment.parameter_openapi_schema or {}
    assert schema["required"] == ["name"]
    assert schema["properties"]["times"]["default"] == 2
    assert schema["properties"]["name"]["description"] == "who to greet"
    assert (deployment.parameters, deployment.tags, deployment.version) == (
        {"name": "ops"},
        ["a"],
        "7",
    )
    ref = deployment.code_bundle
    assert ref is not None
    assert ref.uri == f"s3://{stores.results.bucket}/{bundle_key(ref.sha256)}"
    assert _bundle_keys(stores) == [bundle_key(ref.sha256)]
    assert calls.counts.get("PutObject") == 1

    again = flow.deploy("nightly", work_pool_name=pool, parameters={"name": "ops"})
    assert again == first
    assert calls.counts.get("PutObject") == 1  # same tree, same hash: HEAD, no upload
    assert calls.counts.get("HeadObject") == 2
    assert stores.registry.read_deployment(str(first)).code_bundle == ref

    body = stores.results.s3.get_object(Bucket=stores.results.bucket, Key=bundle_key(ref.sha256))
    archive = project.parent / "b.zip"
    archive.write_bytes(body["Body"].read())
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == [".stratoflowignore", "hello.py", "helper.py"]


def test_flow_deploy_of_an_imported_flow_bundles_its_directory(
    stores: Stores, pool: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``my_flow.deploy(...)`` without from_source: the flow's own file and directory."""
    monkeypatch.syspath_prepend(str(project / "flows"))
    module = importlib.import_module("hello")
    try:
        deployment_id = module.greet.deploy(name="adhoc", work_pool_name=pool)
    finally:
        sys.modules.pop("hello", None)
    deployment = stores.registry.read_deployment(str(deployment_id))
    assert deployment.entrypoint == "hello.py:greet"
    assert deployment.code_bundle is not None


def test_image_or_push_false_stores_no_bundle(stores: Stores, pool: str, project: Path) -> None:
    """``image=``: the code is in the image; ``push=False``: it is at this path on the worker."""
    flow = Flow.from_source(project / "flows", "hello.py:greet")
    in_image = stores.registry.read_deployment(
        str(flow.deploy("img", work_pool_name=pool, image="registry/flows:1"))
    )
    assert (in_image.code_bundle, in_image.path) == (None, None)
    assert in_image.job_variables == {"image": "registry/flows:1"}
    local = stores.registry.read_deployment(
        str(flow.deploy("here", work_pool_name=pool, push=False))
    )
    assert local.code_bundle is None
    assert local.path == str((project / "flows").resolve())
    assert _bundle_keys(stores) == []


def _nothing_stored(stores: Stores) -> None:
    assert list(stores.registry.list_deployments().items) == []
    assert _bundle_keys(stores) == []


def test_unknown_pool_is_refused_and_nothing_is_stored(
    stores: Stores, pool: str, project: Path
) -> None:
    flow = Flow.from_source(project / "flows", "hello.py:greet")
    with pytest.raises(DeploymentError, match="work pool 'nope' does not exist"):
        flow.deploy("x", work_pool_name="nope")
    with pytest.raises(DeploymentError, match="a work pool name is required"):
        flow.deploy("x")
    _nothing_stored(stores)


def test_parameters_outside_the_schema_are_refused(
    stores: Stores, pool: str, project: Path
) -> None:
    flow = Flow.from_source(project / "flows", "hello.py:greet")
    with pytest.raises(Exception, match=r"parameters\.times: 'many' is not of type 'integer'"):
        flow.deploy("x", work_pool_name=pool, parameters={"times": "many"})
    _nothing_stored(stores)


@pytest.mark.parametrize(
    ("entrypoint", "extra", "message"),
    [
        ("missing.py:greet", {}, r"no file .*missing\.py"),
        ("hello.py:nobody", {}, r"has no 'nobody'"),
        ("broken.py:f", {"broken.py": "import not_a_module_here\n"}, "ModuleNotFoundError"),
        ("plain.py:f", {"plain.py": "def f(): ...\n"}, "is a function, not a flow"),
        ("hello.py", {}, "is not 'path/to/file.py:flow_function'"),
    ],
)
def test_bad_entrypoints_are_clear_errors(
    stores: Stores,
    pool: str,
    project: Path,
    entrypoint: str,
    extra: dict[str, str],
    message: str,
) -> None:
    for name, text in extra.items():
        (project / "flows" / name).write_text(text)
    with pytest.raises(DeploymentError, match=message):
        Flow.from_source(project / "flows", entrypoint)
    _nothing_stored(stores)


def test_remote_sources_are_refused(stores: Stores, pool: str) -> None:
    with pytest.raises(DeploymentError, match="remote sources"):
        Flow.from_source("https://github.com/org/repo.git", "flows/etl.py:etl")


# ----------------------------------------------------------------------------- materialize


@pytest.fixture
def deployed_ref(stores: Stores, pool: str, project: Path) -> Iterator[Any]:
    flow = Flow.from_source(project / "flows", "hello.py:greet")
    deployment = stores.registry.read_deployment(str(flow.deploy("m", work_pool_name=pool)))
    yield deployment.code_bundle


def test_materialize_unpacks_once_and_the_flow_loads(
    stores: Stores, deployed_ref: Any, tmp_path: Path
) -> None:
    calls = S3Calls(stores.results.s3)
    cache = tmp_path / "cache"
    directory = materialize(stores, deployed_ref, cache)
    assert directory == cache / deployed_ref.sha256
    assert sorted(p.name for p in directory.iterdir()) == [
        ".stratoflowignore",
        "hello.py",
        "helper.py",
    ]
    assert materialize(stores, deployed_ref, cache) == directory
    assert calls.counts == {"GetObject": 1}  # the second call found it cached
    assert [p.name for p in cache.iterdir()] == [deployed_ref.sha256]  # no temporaries
    flow = Flow.from_source(directory, "hello.py:greet")
    assert flow(name="x", times=1) == "hello x"


def test_materialize_refuses_a_changed_bundle_and_caches_nothing(
    stores: Stores, deployed_ref: Any, tmp_path: Path
) -> None:
    from runtime.results import parse_s3_uri

    bucket, key = parse_s3_uri(deployed_ref.uri)
    stores.results.s3.put_object(Bucket=bucket, Key=key, Body=b"tampered")
    cache = tmp_path / "cache"
    with pytest.raises(BundleError, match=f"expected sha256 {deployed_ref.sha256}"):
        materialize(stores, deployed_ref, cache)
    assert list(cache.iterdir()) == []


def test_from_source_of_a_stored_bundle_keeps_it(
    stores: Stores, deployed_ref: Any, pool: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``from_source(BundleRef, ...)``: an existing code location is reused, not re-uploaded."""
    monkeypatch.setattr("sdk.deployments.deploy._cache_dir", lambda: tmp_path / "c")
    calls = S3Calls(stores.results.s3)
    flow = Flow.from_source(deployed_ref, "hello.py:greet")
    deployment = stores.registry.read_deployment(str(flow.deploy("copy", work_pool_name=pool)))
    assert deployment.code_bundle == deployed_ref
    by_uri = Flow.from_source(deployed_ref.uri, "hello.py:greet")
    again = stores.registry.read_deployment(str(by_uri.deploy("uri", work_pool_name=pool)))
    assert again.code_bundle == deployed_ref
    assert "PutObject" not in calls.counts
    with pytest.raises(DeploymentError, match="must be a stored code bundle"):
        Flow.from_source("s3://bucket/flows/", "hello.py:greet")


def test_entrypoint_left_out_of_the_bundle_is_refused(
    stores: Stores, pool: str, project: Path
) -> None:
    """A ``.stratoflowignore`` that drops the flow's own file: the worker could not load it."""
    flow = Flow.from_source(project / "flows", "hello.py:greet")
    (project / "flows" / ".stratoflowignore").write_text("hello.py\n")
    with pytest.raises(DeploymentError, match=r"hello\.py is not in the bundle"):
        flow.deploy("x", work_pool_name=pool)
    _nothing_stored(stores)


def test_cron_interval_and_bad_fields(stores: Stores, pool: str, project: Path) -> None:
    """Prefect's ``cron=`` / ``interval=`` become schedules; a bad field stores nothing."""
    from datetime import timedelta

    flow = Flow.from_source(project / "flows", "hello.py:greet")
    with pytest.raises(DeploymentError, match=r"invalid deployment: .*tags"):
        flow.deploy("x", work_pool_name=pool, tags=[""])
    _nothing_stored(stores)
    deployment_id = flow.deploy(
        "sched", work_pool_name=pool, cron="0 3 * * *", interval=timedelta(minutes=10)
    )
    schedules = stores.registry.read_deployment(str(deployment_id)).schedules
    assert [s.schedule.model_dump().get("cron") for s in schedules] == ["0 3 * * *", None]
    assert schedules[1].schedule.model_dump()["interval"] == 600
