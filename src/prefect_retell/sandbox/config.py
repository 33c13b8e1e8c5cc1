"""Settings of a sandbox world: key, seed, simulated time and account limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SANDBOX_API_KEY = "key_sandbox_0000"
"""The fixed, documented fake key the sandbox accepts unless configured otherwise."""


class SandboxConfig(BaseModel):
    """How a sandbox behaves; fixed for the life of a `Sandbox`.

    Examples:
        A world where calls last a hundredth of their simulated length and creates
        beyond five live calls end at once with `concurrency_limit_reached`:

        >>> config = SandboxConfig(
        ...     time_scale=0.01, concurrency_limit=5, concurrency_mode="error_call"
        ... )
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str = Field(
        default=DEFAULT_SANDBOX_API_KEY,
        min_length=1,
        repr=False,
        description="Bearer key every Retell endpoint requires.",
    )
    seed: int = Field(
        default=0,
        description="Seed of the deterministic call outcomes and agent choices.",
    )
    time_scale: float = Field(
        default=0.02,
        gt=0,
        description=(
            "Real seconds per simulated second: at 0.02 a call that lasts 90 "
            "simulated seconds takes 1.8 s of wall time."
        ),
    )
    concurrency_limit: int = Field(
        default=20,
        ge=1,
        description="Live calls (registered or ongoing) the account may have.",
    )
    concurrency_mode: Literal["reject", "error_call"] = Field(
        default="reject",
        description=(
            "What a create beyond the concurrency limit gets: 'reject' answers 429; "
            "'error_call' creates a call that ends at once with status 'error' and "
            "reason 'concurrency_limit_reached'."
        ),
    )
    dnc_numbers: list[str] = Field(
        default_factory=list,
        description="E.164 numbers on the internal do-not-call list.",
    )
    list_lag_seconds: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Real seconds after its creation before a call appears in list-calls; "
            "Retell's list can lag behind get-call."
        ),
    )
    idempotency_ttl_seconds: float = Field(
        default=3600,
        gt=0,
        description="How long (real seconds) an idempotency key is remembered.",
    )
