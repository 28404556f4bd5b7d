"""Streaming connections (a followed log, an exec session) held open per user, capped: a
user past the cap is answered 429 at once, so one user's scripts can't hold every
connection the daemon serves."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator

from jobd.domain.owners import Caller
from jobd.errors import TooManyRequests


class StreamSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: collections.Counter[int | None] = collections.Counter()

    @contextlib.contextmanager
    def held(self, caller: Caller) -> Iterator[None]:
        """One of the caller's streaming connections, for as long as it is open."""
        uid = caller.owner.uid
        if self._open[uid] >= self.limit:
            raise TooManyRequests(
                f"{caller.owner.user} has {self._open[uid]} of {self.limit} streaming"
                " connections (followed logs, exec sessions) open; close one first",
                retry_after=1,
            )
        self._open[uid] += 1
        try:
            yield
        finally:
            self._open[uid] -= 1
            if not self._open[uid]:
                del self._open[uid]
