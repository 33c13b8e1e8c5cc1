"""Turning a flow's `credentials` parameter into a block."""

from __future__ import annotations

from prefect_retell.blocks import RetellCredentials


async def resolve_credentials(
    credentials: RetellCredentials | str | None,
) -> RetellCredentials:
    """A block as given, a saved block by name, or one built from the environment.

    Flows take a block name rather than a key, so that no key is ever stored or
    shown as a flow run parameter.
    """
    if isinstance(credentials, RetellCredentials):
        return credentials
    if credentials:
        return await RetellCredentials.aload(credentials)
    return RetellCredentials.from_env()
