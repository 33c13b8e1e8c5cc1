"""A campaign's finished contacts, kept in Prefect's result store for resumed runs.

Retell's own record (calls listed by the campaign named in their metadata) is
what keeps a resumed campaign from dialling anyone twice. This record adds the
contacts whose end Retell cannot give back: calls it no longer lists, and rows
that ended without a call (a create Retell refused). A resumed run reads them
here without asking Retell anything.

The rows are written in parts, not one result per contact: a Prefect
transaction per contact wrote a result file each and cost a campaign about a
third of its CPU time. A run appends a part of the rows finished since the last
one whenever `flush` is called (the campaign does so every few seconds and at
its end). A run killed outright loses the rows of its last few seconds from
this record only; a resumed run finds those calls in Retell's list instead.

Parts are named after the campaign and the shard (`shard` of `shard_count`), so
that the shards of one campaign never write the same part. A run split
differently from the earlier ones does not see their parts and relies on
Retell's list alone.
"""

from __future__ import annotations

import asyncio
import itertools

from prefect.filesystems import NullFileSystem
from prefect.results import ResultStore, get_result_store

from prefect_retell.results import ContactResult

__all__ = ["CampaignRecord"]


class CampaignRecord:
    """The finished rows of one campaign (or shard), by destination number.

    Args:
        campaign_id: The campaign's stable id.
        shard: Which shard of the campaign this run is, from 1.
        shard_count: How many shards the campaign is split into.
        store: Where the parts are kept; the flow run's result store by default.
    """

    def __init__(
        self,
        campaign_id: str,
        shard: int = 1,
        shard_count: int = 1,
        store: ResultStore | None = None,
    ) -> None:
        self._prefix = f"prefect-retell-{campaign_id}-{shard}of{shard_count}-part-"
        self._store = store
        self._rows: dict[str, ContactResult] = {}
        self._pending: list[ContactResult] = []
        self._next_part = 0
        self._lock = asyncio.Lock()

    def get(self, to_number: str) -> ContactResult | None:
        """The recorded row for a destination, or None."""
        return self._rows.get(to_number)

    def __len__(self) -> int:
        return len(self._rows)

    async def load(self) -> None:
        """Read every part earlier runs wrote, in order."""
        store = self._result_store()
        for part in itertools.count():
            key = f"{self._prefix}{part}"
            if not await store.aexists(key):
                self._next_part = part
                return
            record = await store.aread(key)
            for data in record.result:
                row = ContactResult.model_validate(data)
                if row.to_number:
                    self._rows[row.to_number] = row

    def add(self, row: ContactResult) -> None:
        """Note a finished row; it is written with the next part."""
        self._pending.append(row)

    async def flush(self) -> None:
        """Write the rows added since the last part as a new part."""
        async with self._lock:
            if not self._pending:
                return
            rows = list(self._pending)
            key = f"{self._prefix}{self._next_part}"
            # As JSON data rather than pickled models: a later version of the
            # package, with more fields, still reads them.
            data = [row.model_dump(mode="json") for row in rows]
            # Should the write fail, the rows stay pending for the next one.
            await self._result_store().awrite(obj=data, key=key)
            del self._pending[: len(rows)]
            self._next_part += 1

    def _result_store(self) -> ResultStore:
        if self._store is None:
            store = get_result_store()
            # A flow's store keeps no metadata apart (a NullFileSystem), and
            # would then find nothing it wrote: keep record and data together,
            # as Prefect's own transactions do.
            if isinstance(store.metadata_storage, NullFileSystem):
                store = store.model_copy(update={"metadata_storage": None})
            self._store = store
        return self._store
