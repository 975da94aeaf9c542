"""The API's Lambda handler fed an API Gateway REST proxy event, as in AWS.

The event (``tests/fixtures/apigateway_rest_proxy_event.json``, see the README there)
has the full shape API Gateway sends, not the local gateway's ``to_event``. The handler
runs in a fresh Python process, as in a Lambda container: its stdout (Powertools'
structured log lines and CloudWatch EMF metric lines) is captured whole; the stores
talk HTTP to the session's moto server.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.models import FlowRun
from runtime.stores import Stores

ROOT = Path(__file__).resolve().parents[2]
EVENT_FILE = ROOT / "tests" / "fixtures" / "apigateway_rest_proxy_event.json"
REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

#: Invokes the handler once per event in argv[1] (a JSON list), then reports the
#: responses and the tracer's state on stderr (stdout is the handler's alone).
DRIVER = """
import json, os, sys
import aws_xray_sdk
from handlers.api import app, lambda_handler, tracer

if os.environ.get("DRIVER_FAILING_ROUTES"):
    from botocore.exceptions import ClientError
    from runtime.errors import ItemTooLarge

    @app.get("/_throttled")
    def _throttled():
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "Query")

    @app.get("/_too_large")
    def _too_large():
        raise ItemTooLarge("the run item would be 401000 bytes")

    @app.get("/_backend_too_large")
    def _backend_too_large():
        error = {"Code": "ValidationException", "Message": "Item size has exceeded the maximum"}
        raise ClientError({"Error": error}, "PutItem")

class Context:
    function_name = "stratoflow-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stratoflow-api"
    aws_request_id = "7d1b7e4b-0f4d-4b8a-9d53-000000000001"

responses = [lambda_handler(event, Context()) for event in json.load(open(sys.argv[1]))]
report = {
    "responses": responses,
    "tracer_disabled": tracer.disabled,
    "xray_sdk_enabled": aws_xray_sdk.global_sdk_config.sdk_enabled(),
}
print("REPORT " + json.dumps(report), file=sys.stderr)
"""


def invoke(
    events: list[dict[str, Any]], prefix: str, tmp_path: Path, **extra_env: str
) -> dict[str, Any]:
    """Run the handler on ``events`` in a new process; its stdout lines and its report."""
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POWERTOOLS_", "LAMBDA_", "AWS_LAMBDA_", "STRATOFLOW_API_URL"))
    }
    env.update(STRATOFLOW_PREFIX=prefix, PYTHONPATH=str(ROOT), **extra_env)
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    report_line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("REPORT "))
    report: dict[str, Any] = json.loads(report_line[len("REPORT ") :])
    report["stdout"] = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return report


def recorded_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT_FILE.read_text())
    return event


def emf_metrics(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The CloudWatch EMF documents among stdout's JSON lines."""
    return [line for line in lines if "_aws" in line]


def metric_values(doc: dict[str, Any]) -> dict[str, Any]:
    names = [m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
    return {name: doc[name] for name in names}


@pytest.fixture
def provisioned(stores: Stores, prefix: str) -> Stores:
    """This test's installation, provisioned on the session's moto server."""
    return stores


def test_the_recorded_event_is_dispatched_logged_and_traced_off(
    provisioned: Stores, prefix: str, tmp_path: Path
) -> None:
    report = invoke([recorded_event()], prefix, tmp_path)

    (response,) = report["responses"]
    assert response["statusCode"] == 201, response
    created = FlowRun.model_validate_json(response["body"])
    assert (created.flow_name, created.parameters) == ("etl", {"count": 3})
    assert provisioned.runs.read_flow_run(created.id).flow_name == "etl"

    logs = [line for line in report["stdout"] if line.get("message") == "request"]
    assert len(logs) == 1
    log = logs[0]
    assert log["correlation_id"] == REQUEST_ID
    assert (log["http_method"], log["path"], log["status_code"]) == ("POST", "/flow_runs", 201)
    assert log["service"] == "stratoflow-api"
    assert log["function_request_id"] == "7d1b7e4b-0f4d-4b8a-9d53-000000000001"

    # outside Lambda (no LAMBDA_TASK_ROOT), Powertools turns the tracer and the X-Ray SDK off
    assert report["tracer_disabled"] is True
    assert report["xray_sdk_enabled"] is False
    # a request refused nothing: no refusal metric was published
    assert emf_metrics(report["stdout"]) == []


def test_a_4xx_increments_its_metric(provisioned: Stores, prefix: str, tmp_path: Path) -> None:
    ok = recorded_event()
    invalid = copy.deepcopy(ok)
    invalid["body"] = json.dumps({"flow_name": "etl", "parameters": "not an object"})
    invalid["requestContext"]["requestId"] = "req-invalid"
    report = invoke([ok, invalid], prefix, tmp_path)

    assert [r["statusCode"] for r in report["responses"]] == [201, 422]
    (doc,) = emf_metrics(report["stdout"])  # one flush per invocation: only the 422 had any
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Stratoflow"
    assert doc["service"] == "stratoflow-api"
    assert metric_values(doc) == {"Rejections": [1.0]}
    failed = [line for line in report["stdout"] if line.get("status_code") == 422]
    assert [line["correlation_id"] for line in failed] == ["req-invalid"]


def test_conflicts_and_transition_rejections_are_counted(
    provisioned: Stores, prefix: str, tmp_path: Path
) -> None:
    created = invoke([recorded_event()], prefix, tmp_path)["responses"][0]
    run_id = json.loads(created["body"])["id"]
    propose = copy.deepcopy(recorded_event())
    propose["path"] = f"/flow_runs/{run_id}/set_state"
    propose["pathParameters"] = {"proxy": f"flow_runs/{run_id}/set_state"}
    propose["body"] = json.dumps({"state": {"type": "RUNNING", "name": "Running"}})
    again = copy.deepcopy(propose)  # Running again: rejected, the run is already Running
    again["requestContext"]["requestId"] = "req-again"
    report = invoke([propose, again], prefix, tmp_path)

    statuses = [r["statusCode"] for r in report["responses"]]
    bodies = [json.loads(r["body"]) for r in report["responses"]]
    assert statuses[0] == 200, bodies[0]
    assert statuses[1] == 409 and bodies[1]["error"]["type"] == "transition_rejected", bodies[1]
    (doc,) = emf_metrics(report["stdout"])
    assert metric_values(doc) == {"Conflicts": [1.0], "TransitionsRejected": [1.0]}


def test_throttles_and_item_size_refusals_are_counted(
    provisioned: Stores, prefix: str, tmp_path: Path
) -> None:
    """Routes added by the driver raise what the backend raises when it throttles or an
    item is too large (moto never throttles); the handler's own error mapping counts them."""
    events = []
    for path in ("/_throttled", "/_too_large", "/_backend_too_large"):
        event = copy.deepcopy(recorded_event())
        event.update(path=path, httpMethod="GET", body=None, pathParameters={"proxy": path[1:]})
        events.append(event)
    report = invoke(events, prefix, tmp_path, DRIVER_FAILING_ROUTES="1")

    assert [r["statusCode"] for r in report["responses"]] == [429, 413, 413]
    docs = emf_metrics(report["stdout"])
    assert [metric_values(doc) for doc in docs] == [
        {"Throttles": [1.0]},
        {"ItemSizeRefusals": [1.0]},
        {"ItemSizeRefusals": [1.0]},
    ]
