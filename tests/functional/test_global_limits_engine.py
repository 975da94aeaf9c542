"""Global limits seen from flows: inactive task-tag limits, and ``concurrency()`` in a flow.

Prefect: an inactive limit "exists but has no effect" (docs/v3/concepts/
global-concurrency-limits.mdx, "Active and inactive states"); task-tag limits are
global limits named ``tag:<tag>`` (Prefect 3.4.19+), so the flag applies to them too.
"""

from __future__ import annotations

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.models import ConcurrencyLimitUpdate
from runtime.stores import Stores
from sdk import flow, get_client, task
from sdk.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from sdk.concurrency.sync import concurrency
from sdk.exceptions import ConcurrencySlotAcquisitionError


def test_an_inactive_tag_limit_does_not_hold_tasks_back(
    stores: Stores, engine: DirectEngineClient
) -> None:
    @task(tags=["blocked"])
    def tagged() -> str:
        return "ran"

    @flow
    def uses_tag() -> str:
        return tagged()

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit("blocked", 0)
    with pytest.raises(ConcurrencySlotAcquisitionError):
        uses_tag()
    stores.concurrency.update_limit("tag:blocked", ConcurrencyLimitUpdate(active=False))
    assert uses_tag() == "ran"
    assert stores.concurrency.read_limit("tag:blocked").active_slots == 0


def test_concurrency_in_a_task_holds_a_slot_named_for_the_task_run(
    stores: Stores, engine: DirectEngineClient
) -> None:
    seen: list[tuple[int, str | None]] = []

    @task
    def hold() -> None:
        with concurrency("db", occupy=2):
            (lease,) = stores.concurrency.expired_leases(now=_far())
            seen.append((stores.concurrency.read_limit("db").active_slots, lease.holder))

    @flow
    def holds() -> None:
        hold()

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="db", limit=3))
        holds()
        ((slots, holder),) = seen
        assert slots == 2 and holder is not None and holder.startswith("task_run:")
        assert client.read_global_concurrency_limit_by_name("db").active_slots == 0
        client.update_global_concurrency_limit("db", GlobalConcurrencyLimitUpdate(active=False))
    with concurrency("db", occupy=3), concurrency("db", occupy=3):
        assert stores.concurrency.read_limit("db").active_slots == 0


def _far():  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from runtime.states import utcnow

    return utcnow() + timedelta(days=2)
