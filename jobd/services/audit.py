"""The audit log as the edge asks for it: an entry for each state-changing request, and the
log read by admins (anyone else: 403)."""

from __future__ import annotations

from typing import Any

from jobd.domain.audit import AuditEntry
from jobd.domain.owners import Caller
from jobd.errors import Forbidden
from jobd.store import Store


class Audit:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, entry: AuditEntry) -> None:
        await self.store.audit(entry)

    async def entries(
        self, caller: Caller, *, user: str | None, cursor: int | None, limit: int
    ) -> dict[str, Any]:
        """Newest first, a page at a time (nextCursor: the next page's)."""
        if not caller.admin:
            raise Forbidden(f"the audit log: {caller.owner.user} is not an admin of jobd")
        found = await self.store.audit_entries(user=user, before_id=cursor, limit=limit)
        more = len(found) == limit and found[-1].id is not None
        return {
            "entries": [e.to_api() for e in found],
            "nextCursor": str(found[-1].id) if more else None,
        }
