"""The RetellCredentials block: registration, save and load, and its key kept secret."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from conftest import SECRET_API_KEY
from flow_support import TWILIO
from prefect_retell import RetellClient, RetellCredentials

PREFECT_CLI = Path(sys.executable).with_name("prefect")


async def _delete_block_type(slug: str) -> None:
    async with get_client() as client:
        try:
            block_type = await client.read_block_type_by_slug(slug)
        except ObjectNotFound:
            return
        await client.delete_block_type(block_type.id)


async def test_block_registers_with_the_prefect_cli(prefect_server, tmp_path):
    """`prefect block register -m prefect_retell` registers retell-credentials."""
    await _delete_block_type("retell-credentials")
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(tmp_path),
    }

    process = await asyncio.create_subprocess_exec(
        str(PREFECT_CLI),
        "block",
        "register",
        "-m",
        "prefect_retell",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)

    assert process.returncode == 0, output.decode()
    assert "Successfully registered 2 blocks" in output.decode()
    async with get_client() as client:
        credentials = await client.read_block_type_by_slug("retell-credentials")
        suppression = await client.read_block_type_by_slug("retell-suppression-list")
    assert credentials.name == "Retell Credentials"
    assert suppression.name == "Retell Suppression List"


async def test_saved_block_loads_with_a_working_key(prefect_server, keyed_sandbox):
    """A block saved as "fx" and loaded back authenticates to the sandbox (F24)."""
    await RetellCredentials(
        api_key=SECRET_API_KEY, base_url=keyed_sandbox.base_url
    ).asave("fx", overwrite=True)

    loaded = await RetellCredentials.aload("fx")
    async with loaded.get_client() as client:
        number = await client.get_phone_number(TWILIO)

    assert number.phone_number == TWILIO
    assert keyed_sandbox.sandbox.stats()["responses"] == {"200": 1}


async def test_saved_block_dumps_only_the_mask(prefect_server, keyed_sandbox):
    """model_dump_json of a loaded block shows the mask, never the key (F24)."""
    await RetellCredentials(
        api_key=SECRET_API_KEY, base_url=keyed_sandbox.base_url
    ).asave("fx", overwrite=True)

    dumped = (await RetellCredentials.aload("fx")).model_dump_json()

    assert '"api_key":"**********"' in dumped
    assert "SECRET123" not in dumped


def test_block_repr_hides_the_key():
    """Printing a block shows no part of the key."""
    block = RetellCredentials(api_key=SECRET_API_KEY)

    assert "SECRET123" not in repr(block)
    assert "SECRET123" not in str(block)


async def test_client_repr_hides_the_key():
    """Printing the client from a block shows a mask instead of the key."""
    block = RetellCredentials(api_key=SECRET_API_KEY, base_url="http://127.0.0.1:9")

    async with block.get_client() as client:
        shown = repr(client)

    assert isinstance(client, RetellClient)
    assert shown == "RetellClient(base_url='http://127.0.0.1:9', api_key='********')"
