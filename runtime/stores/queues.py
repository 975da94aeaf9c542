"""Work-pool queues in SQS: one standard queue plus a dead-letter queue per pool.

Data access only. The names and attributes come from
:func:`runtime.resources.pool_queue_spec` (``<prefix>-pool-<pool>`` and
``<prefix>-pool-<pool>-dlq``); a queue URL is looked up once per pool and
cached. A pool whose queue does not exist yet (a pool recorded before pools had
queues) gets it on first use, so every operation is safe on any pool name the
registry knows.

Each message says "flow run X of pool P is ready": a :class:`RunMessage`, JSON,
versioned. SQS delivers at least once; the claim (``runtime.services.claims``)
makes the start exactly-once, so a duplicate is harmless.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime.errors import InvalidInput
from runtime.resources import QueueSpec, create_queue_pair, pool_queue_spec
from runtime.states import utcnow

__all__ = [
    "MAX_DELAY_SECONDS",
    "PoolQueue",
    "QueueDepth",
    "QueueStore",
    "ReceivedMessage",
    "RunMessage",
]

MAX_DELAY_SECONDS = 900
"""SQS's longest ``DelaySeconds`` (15 minutes)."""

MAX_VISIBILITY_SECONDS = 43_200
"""SQS's longest visibility timeout (12 hours)."""

_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_STALE_HANDLE = {
    "ReceiptHandleIsInvalid",
    "InvalidParameterValue",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
}


class RunMessage(BaseModel):
    """The body of a work-pool message (JSON): which flow run is ready, of which pool."""

    model_config = ConfigDict(extra="ignore")

    v: Literal[1] = 1
    kind: Literal["flow_run"] = "flow_run"
    flow_run_id: str = Field(min_length=1)
    deployment_id: str | None = None
    work_pool_name: str = Field(min_length=1)
    enqueued_at: datetime = Field(default_factory=utcnow)


class PoolQueue(BaseModel):
    """The URLs of a pool's queue and of its dead-letter queue."""

    url: str
    dlq_url: str


class QueueDepth(BaseModel):
    """SQS's approximate message counts of a pool's queue (and its DLQ)."""

    visible: int = Field(description="Ready to be received")
    in_flight: int = Field(description="Received, not yet deleted or visible again")
    delayed: int = Field(description="Sent with a delay not yet over")
    dead_letters: int = Field(default=0, description="Visible messages in the dead-letter queue")


class ReceivedMessage(BaseModel):
    """One received message: its handle, its parsed body (None if unparseable), its receives."""

    receipt_handle: str
    message_id: str
    body: RunMessage | None
    receive_count: int = 1
    raw_body: str = ""


class QueueStore:
    """Every SQS operation on work-pool queues (see the module docstring)."""

    def __init__(self, sqs: Any, prefix: str, *, max_receive_count: int = 5) -> None:
        self.sqs = sqs
        self.prefix = prefix
        self.max_receive_count = max_receive_count
        self._urls: dict[str, PoolQueue] = {}
        self._lock = threading.Lock()

    def spec(self, pool: str) -> QueueSpec:
        """The queue spec of pool ``pool`` in this installation."""
        return pool_queue_spec(self.prefix, pool, max_receive_count=self.max_receive_count)

    # ------------------------------------------------------------------ queues

    def ensure_pool_queue(self, pool: str) -> PoolQueue:
        """Create the pool's queue and DLQ if missing (idempotent); their URLs."""
        spec = self.spec(pool)
        try:
            url, dlq_url = create_queue_pair(self.sqs, spec)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "QueueAlreadyExists",
                "QueueNameExists",
            ):
                raise
            # it exists with other attributes (e.g. another max_receive_count): keep it
            url = self.sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
            dlq_url = self.sqs.get_queue_url(QueueName=spec.dlq_name)["QueueUrl"]
        queue = PoolQueue(url=url, dlq_url=dlq_url)
        with self._lock:
            self._urls[pool] = queue
        return queue

    def queue(self, pool: str) -> PoolQueue:
        """The pool's queue URLs (cached; the queues are created when missing)."""
        with self._lock:
            known = self._urls.get(pool)
        if known is not None:
            return known
        spec = self.spec(pool)
        try:
            url = self.sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
            dlq_url = self.sqs.get_queue_url(QueueName=spec.dlq_name)["QueueUrl"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _MISSING_QUEUE:
                raise
            return self.ensure_pool_queue(pool)
        queue = PoolQueue(url=url, dlq_url=dlq_url)
        with self._lock:
            self._urls[pool] = queue
        return queue

    def delete_pool_queue(self, pool: str) -> None:
        """Delete the pool's queue and DLQ (no-op for the ones already gone)."""
        spec = self.spec(pool)
        with self._lock:
            self._urls.pop(pool, None)
        for name in (spec.name, spec.dlq_name):
            try:
                url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
                self.sqs.delete_queue(QueueUrl=url)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _MISSING_QUEUE:
                    raise

    def _call(self, pool: str, op: str, **kwargs: Any) -> Any:
        """One SQS call on the pool's main queue; a queue deleted meanwhile is recreated once."""
        try:
            return getattr(self.sqs, op)(QueueUrl=self.queue(pool).url, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _MISSING_QUEUE:
                raise
            with self._lock:
                self._urls.pop(pool, None)
            return getattr(self.sqs, op)(QueueUrl=self.queue(pool).url, **kwargs)

    # ------------------------------------------------------------------ messages

    def send(self, pool: str, message: RunMessage, delay_seconds: float = 0) -> str:
        """Send ``message`` to the pool's queue, hidden for ``delay_seconds`` (<= 900): its id."""
        delay = max(0, int(-(-delay_seconds // 1)))  # round up: never visible early
        if delay > MAX_DELAY_SECONDS:
            raise InvalidInput(
                f"delay_seconds {delay_seconds} is more than SQS's {MAX_DELAY_SECONDS}",
                field="delay_seconds",
            )
        out = self._call(
            pool, "send_message", MessageBody=message.model_dump_json(), DelaySeconds=delay
        )
        return str(out["MessageId"])

    def receive(
        self,
        pool: str,
        *,
        max_messages: int = 1,
        wait_seconds: int = 20,
        visibility_timeout: int | None = None,
    ) -> list[ReceivedMessage]:
        """Long-poll the pool's queue for up to ``max_messages`` (1-10) messages."""
        return self._receive(
            self.queue(pool).url,
            max_messages=max_messages,
            wait_seconds=wait_seconds,
            visibility_timeout=visibility_timeout,
        )

    def _receive(
        self,
        url: str,
        *,
        max_messages: int,
        wait_seconds: int,
        visibility_timeout: int | None,
    ) -> list[ReceivedMessage]:
        kwargs: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": max(1, min(10, max_messages)),
            "WaitTimeSeconds": max(0, min(20, wait_seconds)),
            "AttributeNames": ["ApproximateReceiveCount"],
        }
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = max(0, min(MAX_VISIBILITY_SECONDS, visibility_timeout))
        out = self.sqs.receive_message(**kwargs)
        return [self._parse(m) for m in out.get("Messages", [])]

    @staticmethod
    def _parse(raw: dict[str, Any]) -> ReceivedMessage:
        text = raw.get("Body", "")
        body: RunMessage | None
        try:
            body = RunMessage.model_validate(json.loads(text))
        except (ValueError, ValidationError, TypeError):
            body = None
        count = int(raw.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        return ReceivedMessage(
            receipt_handle=raw["ReceiptHandle"],
            message_id=raw["MessageId"],
            body=body,
            receive_count=count,
            raw_body=text,
        )

    def _visibility(self, url: str, receipt_handle: str, seconds: float) -> bool:
        timeout = max(0, min(MAX_VISIBILITY_SECONDS, int(-(-seconds // 1))))
        try:
            self.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=receipt_handle, VisibilityTimeout=timeout
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _STALE_HANDLE:
                return False
            raise
        return True

    def extend(self, pool: str, receipt_handle: str, seconds: float) -> bool:
        """Keep a received message hidden ``seconds`` more from now (a heartbeat).

        False when the handle is no longer valid (the message was deleted, or became
        visible and was received again by someone else).
        """
        return self._visibility(self.queue(pool).url, receipt_handle, seconds)

    def release(self, pool: str, receipt_handle: str, delay_seconds: float = 0) -> bool:
        """Make a received message visible again after ``delay_seconds`` (0: at once).

        Another worker may then take it. Each receive counts towards the DLQ's
        ``max_receive_count``: to put a message back many times (a paused pool),
        use :meth:`requeue`. False when the handle is no longer valid.
        """
        return self._visibility(self.queue(pool).url, receipt_handle, delay_seconds)

    def requeue(self, pool: str, received: ReceivedMessage, delay_seconds: float = 0) -> str:
        """Send a fresh copy of ``received`` (receive count 0), then delete it: the copy's id.

        For a message that must wait longer than its receive budget allows. Sent
        before the delete, so a crash in between leaves a duplicate, never nothing.
        """
        delay = max(0, min(MAX_DELAY_SECONDS, int(-(-delay_seconds // 1))))
        out = self._call(pool, "send_message", MessageBody=received.raw_body, DelaySeconds=delay)
        self.delete(pool, received.receipt_handle)
        return str(out["MessageId"])

    def delete(self, pool: str, receipt_handle: str) -> bool:
        """Delete a received message; False when the handle was no longer valid."""
        try:
            self.sqs.delete_message(QueueUrl=self.queue(pool).url, ReceiptHandle=receipt_handle)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _STALE_HANDLE:
                return False
            raise
        return True

    def depth(self, pool: str) -> QueueDepth:
        """Approximate counts of the pool's messages: visible, in flight, delayed, dead."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        queue = self.queue(pool)
        main = self.sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=names)
        dead = self.sqs.get_queue_attributes(QueueUrl=queue.dlq_url, AttributeNames=names[:1])
        attrs = main.get("Attributes", {})
        return QueueDepth(
            visible=int(attrs.get(names[0], 0)),
            in_flight=int(attrs.get(names[1], 0)),
            delayed=int(attrs.get(names[2], 0)),
            dead_letters=int(dead.get("Attributes", {}).get(names[0], 0)),
        )

    # ------------------------------------------------------------------ dead letters

    def receive_dead_letters(
        self,
        pool: str,
        *,
        max_messages: int = 10,
        wait_seconds: int = 0,
        visibility_timeout: int | None = None,
    ) -> list[ReceivedMessage]:
        """Messages that reached the pool's DLQ (for the sweep; delete each when handled)."""
        return self._receive(
            self.queue(pool).dlq_url,
            max_messages=max_messages,
            wait_seconds=wait_seconds,
            visibility_timeout=visibility_timeout,
        )

    def delete_dead_letter(self, pool: str, receipt_handle: str) -> bool:
        """Delete a message received from the pool's DLQ; False when the handle was stale."""
        try:
            self.sqs.delete_message(QueueUrl=self.queue(pool).dlq_url, ReceiptHandle=receipt_handle)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _STALE_HANDLE:
                return False
            raise
        return True
