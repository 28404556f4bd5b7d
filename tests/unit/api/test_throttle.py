"""Repeated authentication failures from one peer wait longer and longer, one after another;
a full queue is refused at once; other peers, and a quiet minute, start afresh."""

from __future__ import annotations

import pytest

from jobd.api.throttle import FREE_FAILURES, MAX_WAIT_SECONDS, FailureThrottle
from jobd.errors import TooManyRequests


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_beyond_the_free_ones_wait_doubling_and_queue_up() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock=clock)
    assert [throttle.failed("a") for _ in range(FREE_FAILURES)] == [0.0] * FREE_FAILURES
    waits = [throttle.failed("a") for _ in range(4)]  # sent at once: each waits for the last
    assert waits == [0.25, 0.75, 1.75, 3.75]
    assert throttle.failed("b") == 0.0  # another peer is not held up


def test_the_wait_is_capped_and_a_full_queue_is_refused() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock=clock)
    for _ in range(FREE_FAILURES):
        throttle.failed("a")
    waits = []
    for _ in range(7):  # one after another: each sent once the last was answered
        waits.append(throttle.failed("a"))
        clock.now += waits[-1]
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, MAX_WAIT_SECONDS, MAX_WAIT_SECONDS]
    for _ in range(8):  # at once: they queue, 8 s each, up to a minute queued
        throttle.failed("a")
    with pytest.raises(TooManyRequests) as refused:
        throttle.failed("a")
    assert refused.value.retry_after == 65


def test_a_quiet_minute_forgives() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock=clock)
    for _ in range(FREE_FAILURES + 1):
        throttle.failed("a")
    clock.now += 61.0
    assert throttle.failed("a") == 0.0
