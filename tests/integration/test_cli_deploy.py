"""``stratoflow deploy`` in subprocesses, against the loopback moto server and the local API.

Prefect's reference: ``prefect deploy path/to/file.py:flow_func --name NAME --pool POOL``
and ``prefect deploy --all`` / ``--name`` reading ``prefect.yaml``
(docs/v3/how-to-guides/deployments/prefect-yaml.mdx, "Deploying multiple deployments").
Also here: two worker processes materializing one bundle at once (both end with one
verified copy), which needs the server tier so the processes share S3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.bundles import bundle_key
from runtime.models import WorkPoolCreate
from runtime.stores import Stores

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120

FLOW = textwrap.dedent(
    """
    from sdk import flow

    @flow(name="greeter")
    def greet(name: str, times: int = 1) -> str:
        return " ".join(["hello " + name] * times)
    """
)

PROJECT_FILE = textwrap.dedent(
    """\
    name: demo
    definitions:
      work_pools:
        local: &local
          name: "{{ $DEPLOY_POOL }}"
    deployments:
      - name: nightly
        entrypoint: flows/hello.py:greet
        parameters: {name: night}
        work_pool: *local
        tags: ["{{ $DEPLOY_STAGE }}"]
        schedules:
          - cron: "0 3 * * *"
      - name: in-image
        entrypoint: flows/hello.py:greet
        work_pool:
          <<: *local
          job_variables: {image: "registry.example/flows:1"}
    """
)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def ok(self) -> Result:
        assert self.code == 0, self
        assert "Traceback" not in self.err, self
        return self

    def failed(self, *fragments: str) -> Result:
        assert self.code != 0, self
        assert "Traceback" not in self.err + self.out, self
        for fragment in fragments:
            assert fragment in self.err, (fragment, self.err)
        return self


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "hello.py").write_text(FLOW)
    (root / "flows" / "notes.tmp").write_text("scratch")
    (root / ".stratoflowignore").write_text("*.tmp\n")
    (root / "stratoflow.yaml").write_text(PROJECT_FILE)
    return root


@pytest.fixture
def pool(stores: Stores) -> str:
    stores.registry.create_work_pool(WorkPoolCreate(name="local"))
    return "local"


def _env(prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATOFLOW_")}
    env.update({"STRATOFLOW_PREFIX": prefix, "PYTHONPATH": str(ROOT), **extra})
    return env


def deploy(project: Path, env: dict[str, str], *args: str) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "sdk.cli", "deploy", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _deployments(stores: Stores) -> dict[str, object]:
    return {d.name: d for d in stores.registry.list_deployments().items}


def _bundles(stores: Stores) -> list[str]:
    listed = stores.results.s3.list_objects_v2(Bucket=stores.results.bucket, Prefix="bundles/")
    return [obj["Key"] for obj in listed.get("Contents", [])]


def test_deploy_an_entrypoint_with_direct_aws(
    stores: Stores, pool: str, prefix: str, project: Path
) -> None:
    result = deploy(
        project,
        _env(prefix),
        "flows/hello.py:greet",
        "--name",
        "adhoc",
        "--pool",
        pool,
        "--param",
        "name=ops",
        "--param",
        "times=2",
        "--tag",
        "cli",
        "--version",
        "9",
    ).ok()
    deployment = stores.registry.read_deployment_by_name("greeter", "adhoc")
    assert f"Deployed 'greeter/adhoc' ({deployment.id})" in result.out
    assert deployment.entrypoint == "hello.py:greet"
    assert (deployment.parameters, deployment.tags, deployment.version) == (
        {"name": "ops", "times": 2},
        ["cli"],
        "9",
    )
    assert (deployment.parameter_openapi_schema or {})["required"] == ["name"]
    assert deployment.code_bundle is not None
    assert _bundles(stores) == [bundle_key(deployment.code_bundle.sha256)]


def test_deploy_all_and_by_name_from_the_project_file(
    stores: Stores, pool: str, prefix: str, project: Path
) -> None:
    env = _env(prefix, DEPLOY_POOL=pool, DEPLOY_STAGE="prod")
    deploy(project, env, "--name", "in-image").ok()
    assert list(_deployments(stores)) == ["in-image"]
    result = deploy(project, env, "--all").ok()
    assert result.out.count("Deployed 'greeter/") == 2
    nightly = stores.registry.read_deployment_by_name("greeter", "nightly")
    image = stores.registry.read_deployment_by_name("greeter", "in-image")
    assert nightly.entrypoint == "flows/hello.py:greet"  # relative to the project's root
    assert (nightly.parameters, nightly.tags) == ({"name": "night"}, ["prod"])
    assert nightly.schedules[0].schedule.model_dump()["cron"] == "0 3 * * *"
    assert nightly.code_bundle is not None
    assert (image.code_bundle, image.job_variables) == (
        None,
        {"image": "registry.example/flows:1"},
    )
    # the bundle is the project directory, without what .stratoflowignore lists
    import io
    import zipfile

    body = stores.results.s3.get_object(
        Bucket=stores.results.bucket, Key=bundle_key(nightly.code_bundle.sha256)
    )["Body"].read()
    assert zipfile.ZipFile(io.BytesIO(body)).namelist() == [
        ".stratoflowignore",
        "flows/hello.py",
        "stratoflow.yaml",
    ]


def test_bad_project_file_names_the_line_and_stores_nothing(
    stores: Stores, pool: str, prefix: str, project: Path
) -> None:
    env = _env(prefix, DEPLOY_POOL=pool, DEPLOY_STAGE="prod")
    text = PROJECT_FILE.replace("    tags:", "    colour: red\n    tags:")
    (project / "stratoflow.yaml").write_text(text)
    deploy(project, env, "--all").failed("stratoflow.yaml:11: unknown key 'colour'")
    (project / "stratoflow.yaml").write_text(PROJECT_FILE)
    deploy(project, _env(prefix, DEPLOY_POOL=pool), "--all").failed(
        "stratoflow.yaml:11: environment variable DEPLOY_STAGE is not set"
    )
    (project / "stratoflow.yaml").write_text(PROJECT_FILE.replace("hello.py:greet", "gone.py:f"))
    deploy(project, env, "--all").failed("stratoflow.yaml:7: deployment 'nightly'", "gone.py")
    deploy(project, env, "--name", "nope").failed("no deployment named 'nope'")
    assert _deployments(stores) == {}
    assert _bundles(stores) == []


def test_unknown_pool_and_bad_entrypoint_fail_cleanly(
    stores: Stores, pool: str, prefix: str, project: Path
) -> None:
    env = _env(prefix)
    deploy(project, env, "flows/hello.py:greet", "--name", "x", "--pool", "nope").failed(
        "work pool 'nope' does not exist"
    )
    deploy(project, env, "flows/hello.py:nobody", "--name", "x", "--pool", pool).failed(
        "has no 'nobody'"
    )
    deploy(project, env, "flows/hello.py:greet", "--name", "x").failed("--pool")
    deploy(project, _env(prefix), "--all", "--file", "other.yaml").failed("no such file")
    assert _deployments(stores) == {}
    assert _bundles(stores) == []


def test_through_the_api_bundles_are_refused_with_what_works(
    stores: Stores, api: str, pool: str, prefix: str, project: Path
) -> None:
    env = _env(prefix)
    args = ["flows/hello.py:greet", "--name", "x", "--pool", pool, "--api-url", api]
    deploy(project, env, *args).failed(
        "the Stratoflow API does not receive code bundles", "direct-AWS mode", "image="
    )
    assert _deployments(stores) == {}
    unknown = ["flows/hello.py:greet", "--name", "x", "--pool", "nope", "--api-url", api]
    deploy(project, env, *unknown, "--no-push").failed("work pool 'nope' does not exist")
    result = deploy(project, env, *args, "--no-push").ok()
    deployment = stores.registry.read_deployment_by_name("greeter", "x")
    assert deployment.path == str((project / "flows").resolve())
    assert deployment.code_bundle is None
    assert f"({deployment.id})" in result.out


def test_embedded_default_is_refused(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATOFLOW_", "AWS_END"))}
    env["PYTHONPATH"] = str(ROOT)
    deploy(project, env, "flows/hello.py:greet", "--name", "x", "--pool", "p").failed(
        "no installation to deploy to"
    )


# ----------------------------------------------------------------- materialize, two processes

MATERIALIZE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from runtime.bundles import materialize
    from runtime.models import BundleRef
    from runtime.stores import Stores

    prefix, ref_json, cache, go = sys.argv[1:5]
    stores = Stores.connect(prefix)
    ref = BundleRef.model_validate_json(ref_json)
    while not Path(go).exists():
        time.sleep(0.01)
    print(materialize(stores, ref, Path(cache)))
    """
)


def test_two_processes_materialize_one_bundle_at_once(
    stores: Stores, pool: str, prefix: str, project: Path, tmp_path: Path
) -> None:
    deploy(project, _env(prefix), "flows/hello.py:greet", "--name", "m", "--pool", pool).ok()
    ref = stores.registry.read_deployment_by_name("greeter", "m").code_bundle
    assert ref is not None
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = _env(prefix)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MATERIALIZE, prefix, ref.model_dump_json(), str(cache), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(1.5)  # let both import and wait at the start line (not a timed assertion)
    go.touch()
    outputs = [proc.communicate(timeout=TIMEOUT) for proc in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    paths = {out.strip() for out, _ in outputs}
    assert paths == {str(cache / ref.sha256)}
    assert sorted(p.name for p in cache.iterdir()) == [ref.sha256]  # no temporaries left
    assert (cache / ref.sha256 / "hello.py").read_text() == FLOW
