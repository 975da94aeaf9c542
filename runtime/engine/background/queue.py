"""The background-task queue (SQS ``<prefix>-task-runs``): data access only.

Messages are :class:`TaskRunMessage` JSON. At-least-once: a message may come twice
or to two workers; the claim (one conditional transition) makes a run start once.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime.resources import QueueSpec, create_queue_pair
from runtime.states import utcnow

__all__ = ["ReceivedTaskRun", "TaskRunMessage", "TaskRunQueue"]

_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
MAX_VISIBILITY_SECONDS = 43_200


class TaskRunMessage(BaseModel):
    """The body of a task-run message: which task run is ready, of which task."""

    model_config = ConfigDict(extra="ignore")

    v: Literal[1] = 1
    kind: Literal["task_run"] = "task_run"
    task_run_id: str = Field(min_length=1)
    task_key: str = Field(min_length=1)
    enqueued_at: datetime = Field(default_factory=utcnow)


class ReceivedTaskRun(BaseModel):
    """One received message (``body`` None when it is not a task-run message)."""

    receipt_handle: str
    body: TaskRunMessage | None
    receive_count: int = 1


class TaskRunQueue:
    """Send, receive, extend, release and delete task-run messages."""

    def __init__(self, sqs: Any, spec: QueueSpec) -> None:
        self.sqs = sqs
        self.spec = spec
        self._url: str | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The queue's URL (created with its DLQ when missing)."""
        with self._lock:
            if self._url is None:
                try:
                    self._url = str(self.sqs.get_queue_url(QueueName=self.spec.name)["QueueUrl"])
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in _MISSING_QUEUE:
                        raise
                    self._url = create_queue_pair(self.sqs, self.spec)[0]
            return self._url

    def send(self, message: TaskRunMessage) -> str:
        """Send ``message``; its SQS message id."""
        out = self.sqs.send_message(QueueUrl=self.url, MessageBody=message.model_dump_json())
        return str(out["MessageId"])

    def receive(
        self, *, max_messages: int = 1, wait_seconds: int = 20, visibility_timeout: int = 60
    ) -> list[ReceivedTaskRun]:
        """Long-poll for up to ``max_messages`` (1-10) messages."""
        out = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=max(0, min(20, wait_seconds)),
            VisibilityTimeout=max(0, min(MAX_VISIBILITY_SECONDS, visibility_timeout)),
            AttributeNames=["ApproximateReceiveCount"],
        )
        return [self._parse(raw) for raw in out.get("Messages", [])]

    @staticmethod
    def _parse(raw: dict[str, Any]) -> ReceivedTaskRun:
        body: TaskRunMessage | None
        try:
            body = TaskRunMessage.model_validate(json.loads(raw.get("Body", "")))
        except (ValueError, ValidationError, TypeError):
            body = None
        count = int(raw.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        return ReceivedTaskRun(receipt_handle=raw["ReceiptHandle"], body=body, receive_count=count)

    def _visibility(self, receipt_handle: str, seconds: float) -> bool:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.url,
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=max(0, min(MAX_VISIBILITY_SECONDS, int(seconds))),
            )
        except ClientError:
            return False  # the handle expired (the message was received again) or is gone
        return True

    def extend(self, receipt_handle: str, seconds: float) -> bool:
        """Keep the message hidden ``seconds`` more (a running task's heartbeat)."""
        return self._visibility(receipt_handle, seconds)

    def release(self, receipt_handle: str, delay_seconds: float = 0) -> bool:
        """Make the message visible again after ``delay_seconds`` (hand it back)."""
        return self._visibility(receipt_handle, delay_seconds)

    def delete(self, receipt_handle: str) -> bool:
        """Delete the message (its run is final, or another worker has it)."""
        try:
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)
        except ClientError:
            return False
        return True


def task_run_queue(stores: Any) -> TaskRunQueue:
    """The task-run queue of ``stores`` (sharing its SQS client)."""
    return TaskRunQueue(stores.queues.sqs, stores.specs.task_run_queue)
