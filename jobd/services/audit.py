"""The audit log as the edge asks for it: an entry for each state-changing request, and the
log read by admins (anyone else: 403).

Entries are written in batches, a tenth of a second after the first of a batch, one write
for all of them: a submission does not wait for its entry, and costs the daemon a list
append instead of a write of its own (a write each took a sixth of a submission's CPU). A
read of the log writes what is pending first; a stop writes it too; a crash loses at most
that tenth of a second of entries (the records they describe are written, as ever)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from jobd.domain.audit import AuditEntry
from jobd.domain.owners import Caller
from jobd.errors import Forbidden
from jobd.store import Store

log = logging.getLogger(__name__)
BATCH_SECONDS = 0.1


class Audit:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[AuditEntry] = []
        self._flushing: asyncio.Task[None] | None = None

    def record(self, entry: AuditEntry) -> None:
        """Keep the entry; it is written with its batch."""
        self._pending.append(entry)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_soon(), name="audit-flush")

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(BATCH_SECONDS)
            await self.flush()
        except Exception:  # the database refused it (a full disk): the entries are lost
            log.exception("writing the audit log failed")
        finally:
            self._flushing = None

    async def flush(self) -> None:
        """Write every pending entry now."""
        batch, self._pending = self._pending, []
        if batch:
            await self.store.audit(batch)

    async def close(self) -> None:
        """At a stop, once no request is served: the last batch written."""
        if self._flushing is not None:
            await self._flushing
        await self.flush()

    async def entries(
        self, caller: Caller, *, user: str | None, cursor: int | None, limit: int
    ) -> dict[str, Any]:
        """Newest first, a page at a time (nextCursor: the next page's)."""
        if not caller.admin:
            raise Forbidden(f"the audit log: {caller.owner.user} is not an admin of jobd")
        await self.flush()
        found = await self.store.audit_entries(user=user, before_id=cursor, limit=limit)
        more = len(found) == limit and found[-1].id is not None
        return {
            "entries": [e.to_api() for e in found],
            "nextCursor": str(found[-1].id) if more else None,
        }
