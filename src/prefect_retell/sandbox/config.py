"""Settings of a sandbox world: key, seed, simulated time, limits and webhooks."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_SANDBOX_API_KEY = "key_sandbox_0000"
"""The fixed, documented fake key the sandbox accepts unless configured otherwise."""


def check_webhook_url(url: str) -> str:
    """Return `url` if webhooks can be POSTed to it.

    Raises:
        ValueError: If it is not an absolute http or https URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            "a webhook URL must be an absolute http or https URL, "
            "such as http://127.0.0.1:8000/webhooks/retell"
        )
    return url


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
    webhook_url: str | None = Field(
        default=None,
        description=(
            "Account-level URL that receives the signed call_started, call_ended "
            "and call_analyzed webhooks of every call; an agent's own "
            "webhook_url replaces it for that agent's calls. None sends none."
        ),
    )
    webhook_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Real seconds a webhook delivery waits for a 2xx answer before it "
            "counts as failed and is retried (Retell's default is 10)."
        ),
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_webhook_url(value)
