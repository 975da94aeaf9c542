"""``stratoflow.yaml``: Prefect's ``prefect.yaml`` shape, with errors that name the line.

Reference: Prefect's docs/v3/how-to-guides/deployments/prefect-yaml.mdx ("Deployment
declaration reference", "Templating options": ``{{ $MY_ENV_VAR }}``, "Reuse configuration
across deployments": ``definitions`` with YAML anchors and ``<<`` merges; schedule fields
``cron``/``interval``/``timezone``/``day_or``/``anchor_date``; the integer or detailed
``concurrency_limit``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runtime.models import DeploymentSchedule
from runtime.project_file import ProjectFileError, load_project_file

GOOD = """\
name: demo
prefect-version: null
definitions:
  pools:
    local: &local
      name: "{{ $POOL }}"
      job_variables: {}
deployments:
  - name: nightly
    entrypoint: flows/hello.py:greet
    parameters: {name: ops}
    work_pool: *local
    tags: ["{{ $TAG }}-x", b]
    version: 3
    description: the nightly run
    concurrency_limit: {limit: 2, collision_strategy: CANCEL_NEW}
    enforce_parameter_schema: false
    schedules:
      - cron: "0 3 * * *"
        timezone: Europe/Paris
      - interval: PT1H30M
      - interval: "0:10:00"
        active: false
        parameters: {name: ten}
  - name: other
    entrypoint: pkg.flows:greet
    work_pool:
      <<: *local
      work_queue_name: high
pull: []
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stratoflow.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_reads_prefects_shape_with_env_templates_and_anchors(tmp_path: Path) -> None:
    project = load_project_file(_write(tmp_path, GOOD), env={"POOL": "local", "TAG": "prod"})
    assert project.root == tmp_path.resolve()
    nightly, other = project.deployments
    assert (nightly.name, nightly.entrypoint, nightly.line) == (
        "nightly",
        "flows/hello.py:greet",
        9,
    )
    assert nightly.work_pool_name == "local"
    assert nightly.tags == ["prod-x", "b"]
    assert (nightly.version, nightly.description) == ("3", "the nightly run")
    assert (nightly.concurrency_limit, nightly.collision_strategy) == (2, "CANCEL_NEW")
    assert nightly.enforce_parameter_schema is False
    schedules = [DeploymentSchedule.model_validate(s) for s in nightly.schedules]
    assert schedules[0].schedule.model_dump()["cron"] == "0 3 * * *"
    assert schedules[0].schedule.timezone == "Europe/Paris"
    assert schedules[1].schedule.model_dump()["interval"] == 5400
    assert schedules[2].schedule.model_dump()["interval"] == 600
    assert (schedules[2].active, schedules[2].parameters) == (False, {"name": "ten"})
    assert (other.work_pool_name, other.work_queue_name) == ("local", "high")
    assert [d.name for d in project.select(["other"])] == ["other"]


A = "deployments:\n  - name: a\n    entrypoint: f.py:f\n"
"""The start of a file with one good deployment."""


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (A + "    colour: red\n", 4, "unknown key 'colour'"),
        (A + "    work_pool:\n      nmae: x\n", 5, "unknown key 'nmae' in work_pool"),
        ("deploymnets: []\n", 1, "unknown key 'deploymnets' in the file"),
        (A + "    tags: ['{{ $NOT_SET }}']\n", 4, "environment variable NOT_SET is not set"),
        (A + "    version: '{{ build-image.tag }}'\n", 4, "cannot resolve '{{ build-image.tag }}'"),
        (
            A + "    work_pool: {name: '{{ prefect.variables.pool }}'}\n",
            4,
            "only environment variables",
        ),
        ("deployments:\n  - name: a\n\n    parameters: {}\n", 2, "has no 'entrypoint'"),
        (A + "    tags: a\n", 4, "tags must be a list"),
        (A + "    concurrency_limit: many\n", 4, "concurrency_limit must be an integer"),
        (
            A + "    schedules:\n      - cron: x\n        interval: 5\n",
            5,
            "exactly one of 'cron' or 'interval'",
        ),
        (A + "    schedules:\n      - interval: soon\n", 5, "interval must be a positive number"),
        (A + "    schedules:\n      - rrule: FREQ=DAILY\n", 5, "rrule schedules are not supported"),
        (A + "  - name: a\n    entrypoint: g.py:g\n", 4, "defined twice (first at line 2)"),
        (
            "build:\n  - prefect_docker.deployments.steps.build_docker_image: {}\n"
            "deployments: []\n",
            1,
            "'build' steps are not supported",
        ),
        ("deployments:\n  - name: a\n    entrypoint: [f.py:f\n", 4, "not valid YAML"),
        (A + "    name: b\n", 4, "'name' is given twice"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ProjectFileError) as err:
        load_project_file(path, env={})
    assert str(err.value).startswith(f"{path.resolve()}:{line}: ")
    assert message in str(err.value)
    assert err.value.details["line"] == line


def test_unknown_name_lists_the_names_the_file_has(tmp_path: Path) -> None:
    project = load_project_file(_write(tmp_path, GOOD), env={"POOL": "p", "TAG": "t"})
    with pytest.raises(ProjectFileError, match=r"no deployment named 'x' .*nightly, other"):
        project.select(["x"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProjectFileError, match="no such file"):
        load_project_file(tmp_path / "stratoflow.yaml")
