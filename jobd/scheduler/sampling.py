"""Sampling: every few seconds (config `[metrics] sample_seconds`), each running run's CPU and
memory from its cgroup (found once, from its container's process), and each GPU it holds from
the last GPU read; written as one batch, with what each run has used so far.

CPU is a rate from the kernel's cumulative count: the CPU time between two samples over the
time between them (the first sample of a run: since its start)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from jobd.config import Config
from jobd.domain.capacity import free_on
from jobd.domain.metrics import (
    CPU_USAGE,
    GPU_MEMORY_USAGE,
    GPU_UTILIZATION,
    MEMORY_USAGE,
    RunUsage,
    Sample,
)
from jobd.domain.node import Gpu
from jobd.domain.records import now
from jobd.domain.runs import Run
from jobd.domain.states import RunStatus
from jobd.errors import RuntimeFailure
from jobd.node.cgroups import ContainerCgroup, Reading
from jobd.node.inventory import Inventory
from jobd.runtime.contract import ContainerRuntime
from jobd.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Last:
    at: float
    cpu_ns: int


class Sampler:
    def __init__(
        self, *, store: Store, runtime: ContainerRuntime, inventory: Inventory, config: Config
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.inventory = inventory
        self.settings = config.metrics
        self._cgroups: dict[str, ContainerCgroup | None] = {}  # None: it has none of its own
        self._last: dict[str, _Last] = {}
        self._usage: dict[str, RunUsage] = {}
        self._due = 0.0
        # each running run's last CPU and memory samples (/metrics shows them)
        self.latest: dict[str, dict[str, float]] = {}

    def found(self, run_id: str, pid: int | None) -> None:
        """A run's container started with this main process: its cgroup, found now (without
        asking the runtime again at its first sample)."""
        if pid:
            self._cgroups[run_id] = ContainerCgroup.of(pid)

    def due_in(self) -> float:
        return max(0.0, self._due - time.monotonic())

    async def sample(self, active: list[Run]) -> None:
        """A round of samples of the running runs, when one is due."""
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.settings.sample_seconds
        running = [r for r in active if r.status is RunStatus.RUNNING and r.container_id]
        self._forget_all_but({r.id for r in active})  # an assigned run may be starting now
        moment = time.time()
        samples: list[Sample] = []
        for run in running:
            reading = await self._read(run)
            if reading is not None:
                samples += self._cpu_and_memory(run, reading, moment)
        samples += self._gpus(active, moment)
        latest: dict[str, dict[str, float]] = {}
        for sample in samples:
            if not sample.series:
                latest.setdefault(sample.run_id, {})[sample.name] = sample.value
        self.latest = latest
        if samples:
            used = {s.run_id for s in samples}
            await self.store.record_metrics(
                samples, {k: v for k, v in self._usage.items() if k in used}
            )

    async def prune(self) -> None:
        """Delete points past their keep (each reconcile: a few index lookups when there
        is nothing to delete)."""
        moment = now()
        await self.store.prune_metrics(
            moment - timedelta(hours=self.settings.full_hours),
            moment - timedelta(days=self.settings.keep_days),
        )

    async def _read(self, run: Run) -> Reading | None:
        if run.id not in self._cgroups:
            assert run.container_id is not None
            try:
                pid = (await self.runtime.inspect(run.container_id)).pid
            except RuntimeFailure as e:
                log.info("%s: no cgroup to sample (%s)", run.id, e)
                pid = None
            self._cgroups[run.id] = ContainerCgroup.of(pid) if pid else None
        cgroup = self._cgroups[run.id]
        return cgroup.read() if cgroup is not None else None

    def _cpu_and_memory(self, run: Run, reading: Reading, moment: float) -> list[Sample]:
        started = run.started_at.timestamp() if run.started_at else moment
        last = self._last.get(run.id) or _Last(at=started, cpu_ns=0)
        self._last[run.id] = _Last(at=moment, cpu_ns=reading.cpu_ns)
        elapsed = moment - last.at
        cpu = max(0, reading.cpu_ns - last.cpu_ns) / 1e9 / elapsed if elapsed > 0 else None
        usage = self._usage.get(run.id) or run.usage or RunUsage()
        self._usage[run.id] = usage.updated(
            cpu_seconds=reading.cpu_ns / 1e9,
            cpu=cpu,
            memory=reading.memory_bytes,
            seconds=moment - started,
        )
        memory = Sample(run.id, MEMORY_USAGE, "", moment, float(reading.memory_bytes))
        if cpu is None:
            return [memory]
        return [Sample(run.id, CPU_USAGE, "", moment, cpu), memory]

    def _gpus(self, active: list[Run], moment: float) -> list[Sample]:
        """Each GPU a running run holds: its utilisation, and the memory the run uses on it:
        its processes' as NVML lists them; on a GPU it holds alone whose processes NVML does
        not show (another PID namespace), the memory no listed process explains."""
        node = self.inventory.last
        holders = [r for r in active if r.status is RunStatus.RUNNING and r.allocation]
        if node is None or not any(r.allocation and r.allocation.gpus for r in holders):
            return []
        samples = []
        for state in free_on(node, active).gpus:
            gpu = state.gpu
            runs = [state.exclusive] if state.exclusive else list(state.shared)
            for run_id in runs:
                if run_id is None or not any(r.id == run_id for r in holders):
                    continue
                used = state.used.get(run_id) or (_unlisted(gpu) if state.exclusive else 0)
                samples.append(Sample(run_id, GPU_MEMORY_USAGE, gpu.index, moment, float(used)))
                if gpu.utilization is not None:
                    ratio = gpu.utilization / 100
                    samples.append(Sample(run_id, GPU_UTILIZATION, gpu.index, moment, ratio))
        return samples

    def _forget_all_but(self, running: set[str]) -> None:
        for known in (self._cgroups, self._last, self._usage):
            for run_id in [k for k in known if k not in running]:
                del known[run_id]


def _unlisted(gpu: Gpu) -> int:
    return max(0, gpu.memory_used - sum(p.used_bytes or 0 for p in gpu.processes))
