"""Fair share and quotas in a placement pass: the owners' queues merged in the order a pass
looks at them (priority, then whoever used the machine less, then oldest first), and an owner
whose max_running is reached passed over whole (their queue is not read)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from typing import Protocol

from jobd.domain.runs import Run
from jobd.domain.sharing import QuotaBook


class Queued(Protocol):
    """One owner's queue, as the store reads it (store/queue.py's OwnerQueue)."""

    def next_key(self) -> tuple[int, float, str] | None: ...  # (priority, created_at, id)

    def take(self) -> Run: ...


def merged(
    queues: Mapping[int | None, Queued],
    usage: Mapping[int | None, float],
    book: QuotaBook,
    held: dict[int | None, str],
) -> Iterator[Run]:
    """The owners' queued runs as one queue: priority first, then the owner who used less
    (fair share), then oldest first. An owner's next run is looked at only once their last
    one was dealt with, so an owner who reaches max_running during the pass is passed over
    from then on, unread; `held` gets why, by owner."""
    heads: list[tuple[int, float, float, str, int | None]] = []

    def advance(uid: int | None) -> None:
        why = book.user_full(uid)
        if why is not None:
            held[uid] = why
            return
        key = queues[uid].next_key()
        if key is not None:
            priority, created, run_id = key
            heapq.heappush(heads, (-priority, usage.get(uid, 0.0), created, run_id, uid))

    for uid in queues:
        advance(uid)
    while heads:
        uid = heapq.heappop(heads)[-1]
        yield queues[uid].take()
        advance(uid)
