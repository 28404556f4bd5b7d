"""What every record is made of: ids, times, and the rows they are read from."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol


class Row(Protocol):
    """A database row: sqlite3.Row, or a plain mapping in tests."""

    def __getitem__(self, key: str) -> Any: ...


class _RandomBytes:
    """os.urandom read in blocks. The call releases the GIL, and under load taking it back
    costs far more than the call itself: one call serves a few hundred ids."""

    def __init__(self, block: int = 4096) -> None:
        self._block = block
        self._buffer = b""
        self._offset = 0
        self._lock = threading.Lock()

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._offset + count > len(self._buffer):
                self._buffer, self._offset = os.urandom(self._block), 0
            start, self._offset = self._offset, self._offset + count
            return self._buffer[start : self._offset]


_random_bytes = _RandomBytes()


def new_id(prefix: str) -> str:
    """The prefix and 32 hex digits: the time in milliseconds (48 bits), then 80 random bits.
    Unguessable, and ordered by creation, so new rows land at the end of the store's id
    indexes (random ids dirtied a different page per row, a third of a submission's writing)."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}-{millis:012x}{_random_bytes.take(10).hex()}"


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment else None


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def maybe_epoch(seconds: float | None) -> datetime | None:
    return from_epoch(seconds) if seconds is not None else None
