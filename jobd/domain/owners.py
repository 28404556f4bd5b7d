"""Who a record belongs to: the user who asked for it, and how jobd knew them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    uid: int | None
    user: str
    via: str  # "unix" (peer credentials) or "tcp" (bearer token)

    def to_api(self) -> dict[str, Any]:
        return {"uid": self.uid, "user": self.user, "via": self.via}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Owner:
        return cls(uid=data["uid"], user=data["user"], via=data["via"])
