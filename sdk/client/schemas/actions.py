"""Request models the client takes (Prefect's ``prefect.client.schemas.actions``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runtime.models import ConcurrencyLimitCreate, ConcurrencyLimitUpdate, LimitName

__all__ = [
    "ConcurrencyLimitCreate",
    "GlobalConcurrencyLimitCreate",
    "GlobalConcurrencyLimitUpdate",
]


def _no_held_slots(value: int | None) -> int | None:
    if value:
        raise ValueError(
            "active_slots cannot be set: slots are held by leases (acquire them with "
            "sdk.concurrency.sync.concurrency)"
        )
    return value


class GlobalConcurrencyLimitCreate(BaseModel):
    """A global concurrency limit to create (``client.create_global_concurrency_limit``)."""

    model_config = ConfigDict(extra="forbid")

    name: LimitName = Field(description="The name of the global concurrency limit.")
    limit: int = Field(ge=0, le=1_000_000, description="How many slots may be held at once.")
    active: bool | None = Field(default=True, description="Whether the limit is enforced.")
    active_slots: int | None = Field(
        default=0, description="Must be 0: slots are held by leases, not set."
    )
    slot_decay_per_second: float | None = Field(
        default=0.0, ge=0, le=1_000_000, description="> 0: a rate limit (slots drain)."
    )

    _check_slots = field_validator("active_slots")(_no_held_slots)

    def to_runtime(self) -> ConcurrencyLimitCreate:
        """The store's request."""
        return ConcurrencyLimitCreate(
            name=self.name,
            limit=self.limit,
            active=self.active is not False,
            slot_decay_per_second=self.slot_decay_per_second or 0.0,
        )


class GlobalConcurrencyLimitUpdate(BaseModel):
    """Fields of a global concurrency limit to change (the ones set; ``name`` cannot change)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: LimitName | None = Field(default=None, description="Cannot change: give None.")
    limit: int | None = Field(default=None, ge=0, le=1_000_000)
    active: bool | None = None
    active_slots: int | None = None
    slot_decay_per_second: float | None = Field(default=None, ge=0, le=1_000_000)

    _check_slots = field_validator("active_slots")(_no_held_slots)

    def to_runtime(self, current_name: str) -> ConcurrencyLimitUpdate:
        """The store's request; renaming is refused (limits are keyed by name)."""
        if self.name is not None and self.name != current_name:
            raise ValueError("a global concurrency limit cannot be renamed: create another one")
        return ConcurrencyLimitUpdate(
            limit=self.limit, active=self.active, slot_decay_per_second=self.slot_decay_per_second
        )
