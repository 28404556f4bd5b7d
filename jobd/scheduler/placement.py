"""Placement: which queued runs start now, and on what. Pure: the store hands it the active
runs and the queue (priority, then oldest first), the supervisor the node as last read, and
jobd/domain/capacity.py reckons what is free.

Queue order with backfill (EASY, as Slurm's backfill scheduler): the first queued run that
does not fit gets a reservation — the moment it will fit at the latest, counting every run
placed as running to its deadline (jobd enforces deadlines, so these are true upper bounds),
and what will be left over then beside it. A run behind it may start now only when it fits
now and either ends (at its own deadline) before that moment or fits in what is left over: it
can never delay the head. So a CPU-only run does not wait while the head waits for a GPU,
unless it would take CPUs the head needs once its GPU frees; and a large run at the head is
never starved by a stream of small ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobd.domain.capacity import Decision, Free
from jobd.domain.resources import Allocation
from jobd.domain.runs import Run
from jobd.domain.sharing import QuotaBook
from jobd.domain.states import RunStatus

# Queued runs a pass looks at, at most. As in Slurm, a quick pass on every wake looks a little
# way down the queue; a deep one, now and then, looks far for runs to backfill.
QUICK_DEPTH = 8
DEEP_DEPTH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Slack:
    """How long a run holds what it got beyond its running time: until its container runs
    (an image pull, the create; the deadline clock starts then) and its stop grace after."""

    launch_seconds: float = 0.0
    grace_seconds: float = 0.0

    def end(self, run: Run, moment: datetime) -> datetime:
        """When the run lets go at the latest: its deadline, or for one not running yet,
        its launch and timeout from now; then its stop grace."""
        end = run.deadline_at or moment + timedelta(
            seconds=self.launch_seconds + run.timeout_seconds
        )
        return end + timedelta(seconds=self.grace_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """The blocked head's claim: it starts by `at` at the latest, leaving `leftover` free."""

    run_id: str
    at: datetime
    leftover: Free


def place(
    queue: Iterable[Run],
    active: list[Run],
    free: Free,
    moment: datetime,
    *,
    pin: bool = True,
    slack: Slack = Slack(),
    depth: int = DEEP_DEPTH,
    quotas: QuotaBook | None = None,
) -> Decision:
    """Go down the queue (priority, then oldest first): start each run that fits, until one
    does not; that one gets a reservation and the rest may only backfill around it. A run
    its owner's (or project's) quota holds back waits, reserving nothing."""
    decision = Decision()
    started = list(active)
    reservation: Reservation | None = None
    for looked, run in enumerate(queue):
        held = quotas.holds(run) if quotas is not None else None
        fit = held or free.fit(run, pin=pin)
        if not isinstance(fit, str) and reservation is not None:
            allowed = _backfill(run, fit, reservation, moment, pin=pin, slack=slack)
            fit = allowed if isinstance(allowed, str) else fit
            reservation = reservation if isinstance(allowed, str) else allowed
        if held:
            decision.waiting[run.id] = held
        elif isinstance(fit, str):
            decision.waiting[run.id] = fit
            reservation = reservation or reserve(run, free, started, moment, pin=pin, slack=slack)
        else:
            if quotas is not None:
                quotas.take(run, fit)
            free = free.take(run.id, run.plan, fit)
            started.append(_as_assigned(run, fit))
            decision.start.append((run, fit))
        if free.exhausted:  # nothing more could start
            break
        if looked + 1 >= depth:
            return dataclasses.replace(decision, truncated=True)
    return decision


def _backfill(
    run: Run,
    fit: Allocation,
    reservation: Reservation,
    moment: datetime,
    *,
    pin: bool,
    slack: Slack,
) -> Reservation | str:
    """Whether the run may start ahead of the reserved head: the reservation as it then
    stands, or why not."""
    if slack.end(run, moment) <= reservation.at:
        return reservation  # gone by the time the head starts
    if not reservation.leftover.admits(run.plan, fit):
        return f"held back: it would delay {reservation.run_id}, first in the queue"
    return dataclasses.replace(
        reservation, leftover=reservation.leftover.take(run.id, run.plan, fit)
    )


def reserve(
    head: Run,
    free: Free,
    started: list[Run],
    moment: datetime,
    *,
    pin: bool,
    slack: Slack = Slack(),
) -> Reservation | None:
    """When the head fits at the latest: free the started runs one by one, by deadline, until
    it does. None when it would not fit even then (a GPU busy outside jobd, disk filled by
    others): it holds nothing back, and waits for the node to change."""
    for run, ends in _by_end(started, moment, slack):
        free = free.release(run.id, run.plan, run.allocation or Allocation())
        fit = free.fit(head, pin=pin)
        if not isinstance(fit, str):
            return Reservation(run_id=head.id, at=ends, leftover=free.take(head.id, head.plan, fit))
    return None


def _by_end(runs: list[Run], moment: datetime, slack: Slack) -> Iterator[tuple[Run, datetime]]:
    ends = [(slack.end(r, moment), r) for r in runs if r.status.holds_resources]
    for end, run in sorted(ends, key=lambda pair: (pair[0], pair[1].id)):
        yield run, end


def _as_assigned(run: Run, allocation: Allocation) -> Run:
    return run.with_changes(status=RunStatus.ASSIGNED, allocation=allocation)
