"""Repeated authentication failures from one peer are slowed down: after a few, each further
failure is answered later, the wait doubling up to a cap, and one peer's failures are
answered one after another (parallel guesses queue up). A peer whose failures are queued for
more than a minute is refused at once with 429 until the queue drains; a minute without a
failure forgives it. A request that authenticates is never held up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from jobd.errors import TooManyRequests

FREE_FAILURES = 5  # answered at once (auth_free_failures in the configuration)
QUIET_SECONDS = 60.0  # without a failure: the peer's count starts again
FIRST_WAIT_SECONDS = 0.25
MAX_WAIT_SECONDS = 8.0
MAX_QUEUED_SECONDS = 60.0
MAX_PEERS = 4096  # peers remembered at once; the stalest are forgotten first


@dataclass(slots=True)
class _Failures:
    count: int
    last: float  # the latest failure
    answer_at: float  # when the last slowed failure is answered


class FailureThrottle:
    def __init__(
        self, free_failures: int = FREE_FAILURES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._free = free_failures
        self._clock = clock
        self._peers: dict[str, _Failures] = {}

    def failed(self, peer: str) -> float:
        """Count a failure from `peer`; how long to wait before answering it (TooManyRequests
        when its queue of slowed failures is full)."""
        moment = self._clock()
        failures = self._peers.pop(peer, None)  # popped and put back: the dict stays oldest first
        if failures is None or moment - max(failures.last, failures.answer_at) > QUIET_SECONDS:
            failures = _Failures(count=0, last=moment, answer_at=moment)
        self._peers[peer] = failures
        if len(self._peers) > MAX_PEERS:
            del self._peers[next(iter(self._peers))]
        queued = failures.answer_at - moment
        if queued > MAX_QUEUED_SECONDS:
            raise TooManyRequests(
                f"too many failed authentications from {peer}; try again in {int(queued) + 1} s",
                retry_after=int(queued) + 1,
            )
        failures.count += 1
        failures.last = moment
        over = failures.count - self._free
        if over <= 0:
            return 0.0
        wait = min(FIRST_WAIT_SECONDS * 2 ** (over - 1), MAX_WAIT_SECONDS)
        failures.answer_at = max(moment, failures.answer_at) + wait
        return failures.answer_at - moment
