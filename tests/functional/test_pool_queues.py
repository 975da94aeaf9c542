"""Work-pool queues (runtime.stores.queues) against moto SQS in-process.

One SQS queue per work pool plus a dead-letter queue (ARCHITECTURE.md: "SQS
queues are work pools"), names from ``runtime.resources.pool_queue_spec``.
"""

from __future__ import annotations

import json

import pytest

from runtime.resources import SQS_NAME_MAX, pool_queue_spec, specs
from runtime.stores import Stores
from runtime.stores.queues import QueueStore, RunMessage


def message(run_id: str = "r1", pool: str = "p") -> RunMessage:
    return RunMessage(flow_run_id=run_id, work_pool_name=pool, deployment_id="d1")


def test_queue_names_derive_from_the_prefix_and_stay_within_sqs_limits() -> None:
    spec = pool_queue_spec("sf-x", "gpu")
    assert (spec.name, spec.dlq_name) == ("sf-x-pool-gpu", "sf-x-pool-gpu-dlq")
    long_a = pool_queue_spec("p" * 31, "a" * 100)
    long_b = pool_queue_spec("p" * 31, "a" * 99 + "b")
    assert len(long_a.dlq_name) <= SQS_NAME_MAX and long_a.dlq_name == f"{long_a.name}-dlq"
    assert long_a.name != long_b.name  # the hash keeps shortened names apart
    redrive = json.loads(spec.queue_attributes("arn:dlq")["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": "5"}
    assert spec.queue_attributes("arn:dlq")["ReceiveMessageWaitTimeSeconds"] == "20"


def test_provisioning_creates_the_default_pools_queue_with_its_redrive(stores: Stores) -> None:
    spec = specs(stores.specs.prefix).default_pool_queue
    sqs = stores.queues.sqs
    url = sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    dlq_url = sqs.get_queue_url(QueueName=spec.dlq_name)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == dlq_arn
    assert stores.queues.queue("default").url == url


def test_send_receive_extend_release_delete(stores: Stores) -> None:
    queues = stores.queues
    queues.ensure_pool_queue("p")
    queues.send("p", message("r1"))
    got = queues.receive("p", wait_seconds=0, visibility_timeout=30)
    assert len(got) == 1 and got[0].body is not None
    assert got[0].body.flow_run_id == "r1" and got[0].body.deployment_id == "d1"
    assert got[0].receive_count == 1
    assert queues.depth("p").in_flight == 1 and queues.depth("p").visible == 0
    assert queues.extend("p", got[0].receipt_handle, 60)
    assert queues.receive("p", wait_seconds=0) == []  # still hidden
    assert queues.release("p", got[0].receipt_handle)
    again = queues.receive("p", wait_seconds=0, visibility_timeout=30)
    assert [m.body.flow_run_id for m in again if m.body] == ["r1"]
    assert again[0].receive_count == 2
    assert queues.delete("p", again[0].receipt_handle)
    depth = queues.depth("p")
    assert (depth.visible, depth.in_flight, depth.delayed) == (0, 0, 0)


def test_a_delayed_message_is_counted_as_delayed(stores: Stores) -> None:
    stores.queues.send("p", message(), delay_seconds=300)
    depth = stores.queues.depth("p")
    assert (depth.visible, depth.delayed) == (0, 1)
    assert stores.queues.receive("p", wait_seconds=0) == []


def test_an_unparseable_body_is_received_with_no_body(stores: Stores) -> None:
    url = stores.queues.queue("p").url
    stores.queues.sqs.send_message(QueueUrl=url, MessageBody="not json")
    stores.queues.sqs.send_message(QueueUrl=url, MessageBody='{"v": 2, "kind": "other"}')
    got = stores.queues.receive("p", max_messages=10, wait_seconds=0)
    assert sorted(m.raw_body for m in got) == sorted(["not json", '{"v": 2, "kind": "other"}'])
    assert all(m.body is None for m in got)


def test_a_message_received_too_often_moves_to_the_dlq(stores: Stores) -> None:
    queues = QueueStore(stores.queues.sqs, stores.specs.prefix, max_receive_count=2)
    queues.send("few", message("poison", "few"))
    for _ in range(2):
        got = queues.receive("few", wait_seconds=0, visibility_timeout=0)
        assert len(got) == 1
    assert queues.receive("few", wait_seconds=0) == []  # redriven on the third receive
    dead = queues.receive_dead_letters("few")
    assert [m.body.flow_run_id for m in dead if m.body] == ["poison"]
    assert queues.delete_dead_letter("few", dead[0].receipt_handle)


def test_requeue_sends_a_fresh_copy_and_deletes_the_old(stores: Stores) -> None:
    queues = stores.queues
    queues.send("p", message("r9"))
    first = queues.receive("p", wait_seconds=0, visibility_timeout=0)[0]
    second = queues.receive("p", wait_seconds=0, visibility_timeout=30)[0]
    assert second.receive_count == 2
    queues.requeue("p", second)
    fresh = queues.receive("p", wait_seconds=0, visibility_timeout=30)
    assert [m.receive_count for m in fresh] == [1] and fresh[0].body == second.body
    assert fresh[0].message_id not in (first.message_id, second.message_id)


def test_a_stale_handle_is_reported_not_raised(stores: Stores) -> None:
    stores.queues.send("p", message())
    got = stores.queues.receive("p", wait_seconds=0)[0]
    assert stores.queues.delete("p", got.receipt_handle)
    assert stores.queues.extend("p", "bogus-handle", 10) is False
    assert stores.queues.release("p", "bogus-handle") is False


def test_deleting_a_pool_queue_removes_both_and_is_idempotent(stores: Stores) -> None:
    queues = stores.queues
    queues.ensure_pool_queue("gone")
    queues.delete_pool_queue("gone")
    queues.delete_pool_queue("gone")
    names = stores.queues.sqs.list_queues(QueueNamePrefix=f"{stores.specs.prefix}-pool-gone")
    assert names.get("QueueUrls", []) == []


def test_messages_are_versioned_json() -> None:
    body = json.loads(message("r1").model_dump_json())
    assert body["v"] == 1 and body["kind"] == "flow_run"
    assert set(body) == {
        "v",
        "kind",
        "flow_run_id",
        "deployment_id",
        "work_pool_name",
        "enqueued_at",
    }
    with pytest.raises(ValueError):
        RunMessage.model_validate({"v": 2, "flow_run_id": "x", "work_pool_name": "p"})
