"""Fair share and quotas in a placement pass: the owners' queues merged in the order a pass
looks at them (priority, then whoever used the machine less, then oldest first), and an owner
whose max_running is reached passed over whole (their queue is not read)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping
from datetime import datetime

from jobd.domain.runs import Run
from jobd.domain.sharing import (
    QuotaBook,
)


def merged(
    queues: Mapping[int | None, Iterator[Run]],
    usage: Mapping[int | None, float],
    book: QuotaBook,
    held: dict[int | None, str],
) -> Iterator[Run]:
    """The owners' queued runs as one queue: priority first, then the owner who used less
    (fair share), then oldest first. Each owner's next run is read only when their last one
    was dealt with, so an owner who reaches max_running during the pass is passed over from
    then on, unread; `held` gets why, by owner."""
    order = itertools.count()  # ties never compare runs
    heads: list[tuple[int, float, datetime, str, int, Run, int | None]] = []

    def advance(uid: int | None) -> None:
        why = book.user_full(uid)
        if why is not None:
            held[uid] = why
            return
        run = next(queues[uid], None)
        if run is not None:
            key = (-run.priority, usage.get(uid, 0.0), run.created_at, run.id, next(order))
            heapq.heappush(heads, (*key, run, uid))

    for uid in queues:
        advance(uid)
    while heads:
        *_, run, uid = heapq.heappop(heads)
        yield run
        advance(uid)
