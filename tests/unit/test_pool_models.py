"""Models of work pools and deployments' concurrency options (pure).

Prefect 3's ``ConcurrencyLimitStrategy`` (ENQUEUE, CANCEL_NEW), ``ConcurrencyOptions``
and ``ConcurrencyLimitConfig`` (src/prefect/client/schemas/objects.py; the
deployments concept page, docs/v3/concepts/deployments.mdx, "Concurrency
limiting": the strategy falls back to ENQUEUE when unset).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runtime.models import Deployment, DeploymentCreate, DeploymentUpdate
from sdk.client.schemas.objects import (
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
    ConcurrencyOptions,
)


def test_the_collision_strategies_are_prefects() -> None:
    assert [s.value for s in ConcurrencyLimitStrategy] == ["ENQUEUE", "CANCEL_NEW"]
    assert ConcurrencyOptions().collision_strategy is ConcurrencyLimitStrategy.ENQUEUE


def test_a_limit_config_splits_into_limit_and_options() -> None:
    config = ConcurrencyLimitConfig(limit=3, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    limit, options = config.split()
    assert limit == 3 and options.collision_strategy is ConcurrencyLimitStrategy.CANCEL_NEW
    assert ConcurrencyLimitConfig(limit=1).split()[1] == ConcurrencyOptions()


def test_deployments_carry_concurrency_options_as_json() -> None:
    created = DeploymentCreate(
        name="d",
        flow_name="f",
        concurrency_limit=1,
        concurrency_options={"collision_strategy": "CANCEL_NEW"},  # type: ignore[arg-type]
    )
    assert created.concurrency_options == ConcurrencyOptions(
        collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
    )
    stored = Deployment(id="x", **created.model_dump())
    assert Deployment.model_validate_json(stored.model_dump_json()) == stored
    assert DeploymentUpdate(concurrency_options=None).model_dump(exclude_unset=True) == {
        "concurrency_options": None
    }


def test_an_unknown_strategy_or_field_names_the_field() -> None:
    with pytest.raises(ValidationError, match=r"concurrency_options\.collision_strategy"):
        DeploymentCreate(
            name="d",
            flow_name="f",
            concurrency_options={"collision_strategy": "DROP"},  # type: ignore[arg-type]
        )
    with pytest.raises(ValidationError, match="limit"):
        ConcurrencyLimitConfig(limit=-1)
