"""Placement passes: one pass places what fits down the queue (the pure policy is
placement.py; the pass's reads, decision and record are one write in the store), notes the GPU
memory each run uses as it goes, and is timed. /v1/health serves the times; the benchmark reads
them."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from jobd.config import Config
from jobd.domain.capacity import Decision, Free, free_on
from jobd.domain.engine import RuntimeInfo
from jobd.domain.records import now
from jobd.domain.resources import Allocation
from jobd.domain.runs import Run
from jobd.domain.sharing import QuotaBook, day_gpu_seconds, fair_usage
from jobd.node.inventory import Inventory
from jobd.scheduler.placement import DEEP_DEPTH, QUICK_DEPTH, Slack, place
from jobd.scheduler.sharing import merged
from jobd.store import Store
from jobd.store.queue import Queues, Used
from jobd.users import name_or

LAUNCH_ALLOWANCE_SECONDS = 300.0  # an image pull and a container's creation, at most
DEEP_PASS_SECONDS = 5.0  # how often a placement pass may look far down the queue
RECENT_PASSES = 1000


class PassTimes:
    """How long scheduling passes take (reading the active runs and the queue's head,
    deciding, recording what was placed): the last, the slowest, and percentiles over the
    recent ones. Served by /v1/health; the benchmark reads it."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0  # seconds, all passes together
        self.last = 0.0
        self.slowest = 0.0
        self.recent: deque[float] = deque(maxlen=RECENT_PASSES)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.last = seconds
        self.slowest = max(self.slowest, seconds)
        self.recent.append(seconds)

    def percentile(self, pct: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _owner(uid: int | None) -> str:
    return name_or(uid, "an unknown user")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Placer:
    """Runs placement passes and keeps what the last one saw: why queued runs wait, whether
    it stopped short (a deep pass is due), whether it placed a GPU run."""

    def __init__(
        self, *, store: Store, config: Config, inventory: Inventory, info: RuntimeInfo
    ) -> None:
        self.store = store
        self.config = config
        self.inventory = inventory
        self.info = info
        self.waiting: dict[str, str] = {}  # why queued runs wait, as the last pass saw
        # why all of a user's queued runs wait (their max_running is reached), by uid
        self.held_users: dict[int | None, str] = {}
        self.look_further = False  # the last pass stopped short: a deep one is due
        self.placed_gpus = False  # the last pass placed a GPU run
        self.passes = PassTimes()  # placement passes, their own time
        self.pass_waits = PassTimes()  # the same passes as the supervisor waited for them
        self._last_deep = 0.0  # when a pass last looked far down the queue
        self._gpu_peaks: dict[str, int] = {}  # run -> the most GPU memory recorded
        self._peaks_changed: set[str] = set()

    async def start_what_fits(self, launch: Callable[[Run], None]) -> None:
        """Place runs down the queue — priority, then oldest first — each where it fits now,
        with backfill around a blocked head (placement.py), and `launch` them. The pass
        (reads, decision, record) is one write in the store. Both its own time and the time
        the supervisor waited for it (the writer busy with other writes, the event loop with
        other work) are kept for /v1/health."""
        began = time.perf_counter()
        node = await self.inventory.read()
        pin = self.config.cpu_pinning and "cpuset" in self.info.cgroup_controllers
        depth = self._depth()
        held: dict[int | None, str] = {}

        sharing = self.config.sharing

        def choose(queues: Queues, active: list[Run], spent: Used) -> Decision:
            moment = now()
            free = free_on(node, active)
            self._record_gpu_use(free, active)
            day = day_gpu_seconds(spent.gpu_day, active, moment)
            quotas = QuotaBook(sharing, _owner, active, day)
            usage = fair_usage(sharing.fair_share, spent.fair, active, moment)
            decision = place(
                merged(queues, usage, quotas, held),
                active,
                free,
                moment,
                pin=pin,
                slack=self._slack,
                depth=depth,
                quotas=quotas,
            )
            start = [(run, self._with_factors(a)) for run, a in decision.start]
            return dataclasses.replace(decision, start=start)

        placement = await self.store.assign_what_fits(choose, share=sharing.fair_share)
        self.waiting = placement.waiting
        self.held_users = held
        self.look_further = placement.truncated  # a deep pass then, without waiting a wake
        # a GPU run placed now is not in this step's snapshot: sample its memory soon anyway
        self.placed_gpus = any(r.allocation and r.allocation.gpus for r in placement.assigned)
        self.passes.add(placement.seconds)
        self.pass_waits.add(time.perf_counter() - began)
        for run in placement.assigned:
            launch(run)
        await self._save_gpu_peaks()

    def reason(self, run: Run) -> str | None:
        """Why a queued run waits, as the last pass saw: its own reason, or its owner's
        (every run of a user whose max_running is reached waits for that)."""
        return self.reason_of(run.id, run.owner_uid)

    def reason_of(self, run_id: str, owner_uid: int | None) -> str | None:
        return self.waiting.get(run_id) or self.held_users.get(owner_uid)

    def report(self) -> dict[str, Any]:
        """The passes' times, for /v1/health."""
        passes, waits = self.passes, self.pass_waits
        return {
            "passes": passes.count,
            "lastPassMs": _ms(passes.last),
            "slowestPassMs": _ms(passes.slowest),
            "recentP50Ms": _ms(passes.percentile(50)),
            "recentP99Ms": _ms(passes.percentile(99)),
            "waited": {
                "slowestMs": _ms(waits.slowest),
                "recentP50Ms": _ms(waits.percentile(50)),
                "recentP99Ms": _ms(waits.percentile(99)),
            },
        }

    def _depth(self) -> int:
        """How far down the queue this pass looks: a little on every wake (passes stay
        cheap with thousands queued), far every DEEP_PASS_SECONDS at most, for backfill
        (Slurm's own backfill runs every 30 s)."""
        if time.monotonic() - self._last_deep < DEEP_PASS_SECONDS:
            return QUICK_DEPTH
        self._last_deep = time.monotonic()
        return DEEP_DEPTH

    @property
    def _slack(self) -> Slack:
        return Slack(
            launch_seconds=LAUNCH_ALLOWANCE_SECONDS, grace_seconds=self.config.stop_grace_seconds
        )

    def _with_factors(self, allocation: Allocation) -> Allocation:
        factor = self.config.gpus.factor
        gpus = tuple(dataclasses.replace(g, factor=factor(g.name)) for g in allocation.gpus)
        return dataclasses.replace(allocation, gpus=gpus)

    def _record_gpu_use(self, free: Free, active: list[Run]) -> None:
        """Note the GPU memory each run's processes use now (as this pass reckons it), when
        more than seen before."""
        if self._gpu_peaks:
            live = {r.id for r in active}
            self._gpu_peaks = {k: v for k, v in self._gpu_peaks.items() if k in live}
        use: dict[str, int] = {}
        for state in free.gpus:
            for run_id, used in state.used.items():
                use[run_id] = use.get(run_id, 0) + used
        for run_id, used in use.items():
            if used > self._gpu_peaks.get(run_id, 0):
                self._gpu_peaks[run_id] = used
                self._peaks_changed.add(run_id)

    async def _save_gpu_peaks(self) -> None:
        changed, self._peaks_changed = self._peaks_changed, set()
        for run_id in changed:
            await self.store.record_gpu_peak(run_id, self._gpu_peaks.get(run_id, 0))
