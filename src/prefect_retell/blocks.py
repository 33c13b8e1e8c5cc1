"""The `RetellCredentials` block: a Retell API key and where to send it."""

from __future__ import annotations

import os

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from prefect_retell.client import DEFAULT_BASE_URL, RetellClient, RetryPolicy
from prefect_retell.errors import RetellConfigurationError

__all__ = ["RetellCredentials"]


class RetellCredentials(CredentialsBlock):
    """A Retell API key, the API's address and request settings.

    Save one in the Prefect UI or in code, then pass its name to the flows. With no
    saved block, `RetellCredentials.from_env()` reads `RETELL_API_KEY` and
    `RETELL_BASE_URL`.

    Example:
        Save a block once, then load it in a flow:
        ```python
        from prefect_retell import RetellCredentials

        RetellCredentials(api_key="key_...").save("retell")

        credentials = RetellCredentials.load("retell")
        async with credentials.get_client() as client:
            number = await client.get_phone_number("+16505550100")
        ```
    """

    _block_type_name = "Retell Credentials"
    _block_type_slug = "retell-credentials"
    _logo_url = "https://avatars.githubusercontent.com/u/128401473"
    _documentation_url = "https://docs.retellai.com/api-references"
    _description = "An API key for Retell AI voice agents, to place and follow calls."

    api_key: SecretStr = Field(
        default=...,
        title="API key",
        description=(
            "The Retell API key (key_...), from the API Keys page of the Retell "
            "dashboard. It is sent as a bearer token and never logged or shown."
        ),
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        title="Base URL",
        description=(
            "Where the Retell API is served. Keep the default for Retell; give a "
            "sandbox's address (such as http://127.0.0.1:8765) to rehearse."
        ),
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds to wait for Retell to answer one request.",
    )
    connect_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Seconds to wait for a connection to Retell.",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description=(
            "Attempts per request in all (1 to 20): a request answered 429 or 5xx, "
            "or whose connection failed, is tried again up to this count."
        ),
    )

    @classmethod
    def from_env(cls) -> RetellCredentials:
        """Build credentials from `RETELL_API_KEY` and `RETELL_BASE_URL`.

        Raises:
            RetellConfigurationError: `RETELL_API_KEY` is not set.
        """
        api_key = os.environ.get("RETELL_API_KEY")
        if not api_key:
            raise RetellConfigurationError(
                "No Retell credentials: pass the name of a saved RetellCredentials "
                "block, or set the RETELL_API_KEY environment variable."
            )
        base_url = os.environ.get("RETELL_BASE_URL") or DEFAULT_BASE_URL
        return cls(api_key=api_key, base_url=base_url)

    def get_client(self) -> RetellClient:
        """Return a ready client; use it with `async with` to close it after.

        The key is read from the secret field itself, never from its printed form,
        which is a mask.
        """
        return RetellClient(
            self.api_key.get_secret_value(),
            base_url=self.base_url,
            timeout_seconds=self.timeout_seconds,
            connect_timeout_seconds=self.connect_timeout_seconds,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            logger=self.logger,
        )
