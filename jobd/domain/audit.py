"""The audit log: every state-changing request, who made it (user, and through which peer or
token), what it asked, when, how it ended, and the ids it touched."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from jobd.domain.records import Row, from_epoch, rfc3339


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    at: datetime
    user: str | None  # None: the request was not authenticated
    uid: int | None
    via: str | None  # unix, tcp (the daemon's token), token, hmac
    token_id: str | None
    peer: str  # "unix", or the TCP peer's address
    method: str
    path: str  # as asked, query left out
    status: int  # the HTTP status it was answered with
    ids: tuple[str, ...] = ()  # the records it named or made
    id: int | None = None  # the entry's own, once recorded

    @property
    def outcome(self) -> str:
        return "ok" if self.status < 400 else "refused" if self.status < 500 else "failed"

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": rfc3339(self.at),
            "user": self.user,
            "uid": self.uid,
            "via": self.via,
            "tokenId": self.token_id,
            "peer": self.peer,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "outcome": self.outcome,
            "ids": list(self.ids),
        }

    @classmethod
    def from_row(cls, row: Row) -> AuditEntry:
        return cls(
            id=row["id"],
            at=from_epoch(row["at"]),
            user=row["user"],
            uid=row["uid"],
            via=row["via"],
            token_id=row["token_id"],
            peer=row["peer"],
            method=row["method"],
            path=row["path"],
            status=row["status"],
            ids=tuple(orjson.loads(row["ids"])),
        )


# the fields of a created record's document that name it (and what it made with it)
CREATED_IDS = ("id", "latestRunId", "slug", "name")


def created_ids(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The ids a 201's document names: a job and its first run, an upload, a volume, a
    token (its id only, never its secret)."""
    token = doc.get("token")
    if isinstance(token, Mapping):
        return created_ids(token)
    return tuple(str(doc[key]) for key in CREATED_IDS if isinstance(doc.get(key), str))
