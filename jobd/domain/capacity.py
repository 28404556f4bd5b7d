"""What is free on the node once the active runs hold what they were given, whether a plan
could ever fit it, and what a placement pass decided. Pure: the placement policy that walks the
queue with these (jobd/scheduler/placement.py) and GET /v1/node read the same reckoning.

What a run needs is its plan: CPUs, memory, disk, and GPUs — exclusive by default, or shared
by memory (`gpu_share` with `min_vram_bytes`). A GPU's memory available to a new run is what
NVML says is free, less what runs placed on it were promised and have not allocated yet. A GPU
a process jobd did not start is using (a colleague's notebook) is busy for exclusive use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from jobd.domain.node import Gpu, NodeInventory
from jobd.domain.resources import GIB, MIB, Allocation, GpuGrant, Plan
from jobd.domain.runs import Run

EPSILON = 1e-9
DRIVER_RESERVE_BYTES = GIB  # an idle GPU shows this much in use (the driver's own)


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuState:
    """One GPU as placement sees it: who holds it and how much memory a new run could get."""

    gpu: Gpu
    exclusive: str | None = None  # the run holding it whole
    shared: Mapping[str, int] = field(default_factory=dict)  # run -> memory it was promised
    used: Mapping[str, int] = field(default_factory=dict)  # run -> memory its processes use
    foreign_bytes: int = 0  # used by processes jobd did not start
    foreign_pids: tuple[int, ...] = ()
    available: int = 0  # memory a new shared run could count on

    @property
    def busy_outside(self) -> bool:
        return bool(self.foreign_pids) or self.foreign_bytes > 0

    @property
    def idle(self) -> bool:
        return self.exclusive is None and not self.shared and not self.busy_outside

    def holds(self, run_id: str) -> int:
        """Memory the run keeps from others: what it uses, or was promised if more."""
        return max(self.shared.get(run_id, 0), self.used.get(run_id, 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Free:
    """What is free on the node: the sums, the cores no run is pinned to, and each GPU."""

    cpus: float
    memory_bytes: int
    storage_bytes: int
    cores: frozenset[int]
    gpus: tuple[GpuState, ...]

    # -- fitting ----------------------------------------------------------------------

    def fit(self, run: Run, *, pin: bool) -> Allocation | str:
        """What the run would get now, or why it waits ("waiting for ...")."""
        plan = run.plan
        short = self._short(plan)
        if short:
            return "waiting for " + " and ".join(short)
        grants = self._gpus_for(plan)
        if isinstance(grants, str):
            return grants
        cores = sorted(self.cores)[: int(plan.cpus)] if pin and _whole(plan.cpus) else []
        return Allocation(gpus=tuple(grants), cores=tuple(cores))

    def _short(self, plan: Plan) -> list[str]:
        short = []
        if plan.cpus > self.cpus + EPSILON:
            short.append(f"{plan.cpus:g} CPUs ({max(self.cpus, 0):g} free)")
        if plan.memory_bytes > self.memory_bytes:
            short.append(f"{_gib(plan.memory_bytes)} of memory ({_gib(self.memory_bytes)} free)")
        if plan.storage_bytes > self.storage_bytes:
            short.append(f"{_gib(plan.storage_bytes)} of disk ({_gib(self.storage_bytes)} free)")
        return short

    def _gpus_for(self, plan: Plan) -> list[GpuGrant] | str:
        if plan.gpus == 0:
            return []
        if plan.gpu_share:
            fitting = [s for s in self.gpus if _shares(s, plan)]
            fitting.sort(key=lambda s: (s.available, s.gpu.index))  # pack: the fullest that fits
        else:
            fitting = [s for s in self.gpus if _whole_gpu_fits(s, plan)]
        if len(fitting) < plan.gpus:
            return "waiting for " + _gpu_wish(plan)
        return [_grant(s.gpu, plan) for s in fitting[: plan.gpus]]

    def admits(self, plan: Plan, allocation: Allocation) -> bool:
        """Whether these very GPUs (and enough CPUs, memory and disk) are free for the plan.
        Cores are not matched one by one: whenever the CPUs fit, enough cores are free."""
        if self._short(plan):
            return False
        states = {s.gpu.uuid: s for s in self.gpus}
        for grant in allocation.gpus:
            state = states.get(grant.uuid)
            if state is None:
                return False
            fits = _shares(state, plan) if grant.shared else _whole_gpu_fits(state, plan)
            if not fits:
                return False
        return True

    # -- taking and releasing ---------------------------------------------------------

    def take(self, run_id: str, plan: Plan, allocation: Allocation) -> Free:
        return self._apply(run_id, plan, allocation, sign=-1)

    def release(self, run_id: str, plan: Plan, allocation: Allocation) -> Free:
        return self._apply(run_id, plan, allocation, sign=+1)

    def _apply(self, run_id: str, plan: Plan, allocation: Allocation, *, sign: int) -> Free:
        cores = set(self.cores)
        if sign < 0:
            cores -= set(allocation.cores)
        else:
            cores |= set(allocation.cores)
        mine = {g.uuid: g for g in allocation.gpus}
        return Free(
            cpus=self.cpus + sign * plan.cpus,
            memory_bytes=self.memory_bytes + sign * plan.memory_bytes,
            storage_bytes=self.storage_bytes + sign * plan.storage_bytes,
            cores=frozenset(cores),
            gpus=tuple(
                _gpu_change(s, run_id, mine[s.gpu.uuid], sign) if s.gpu.uuid in mine else s
                for s in self.gpus
            ),
        )

    @property
    def exhausted(self) -> bool:
        """Nothing could start: no CPU left to give."""
        return self.cpus < EPSILON


def _whole(cpus: float) -> bool:
    return cpus >= 1 and float(cpus).is_integer()


def _shares(state: GpuState, plan: Plan) -> bool:
    return state.exclusive is None and state.available >= plan.min_vram_bytes


def _whole_gpu_fits(state: GpuState, plan: Plan) -> bool:
    """An idle GPU, all of it: its total memory counts (NVML's free figure of an idle GPU is
    a little less, what the driver keeps)."""
    return state.idle and state.gpu.memory_total >= plan.min_vram_bytes


def _grant(gpu: Gpu, plan: Plan) -> GpuGrant:
    return GpuGrant(
        uuid=gpu.uuid,
        index=gpu.index,
        name=gpu.name,
        shared=plan.gpu_share,
        vram_bytes=plan.min_vram_bytes if plan.gpu_share else gpu.memory_total,
    )


def _gpu_change(state: GpuState, run_id: str, grant: GpuGrant, sign: int) -> GpuState:
    if not grant.shared:
        if sign < 0:
            return dataclasses.replace(state, exclusive=run_id, available=0)
        held = state.gpu.memory_free + sum(state.used.values())
        return dataclasses.replace(state, exclusive=None, used={}, available=held)
    if sign < 0:
        shared = {**state.shared, run_id: grant.vram_bytes}
        return dataclasses.replace(
            state, shared=shared, available=state.available - grant.vram_bytes
        )
    held = state.holds(run_id)
    shared = {k: v for k, v in state.shared.items() if k != run_id}
    used = {k: v for k, v in state.used.items() if k != run_id}
    return dataclasses.replace(state, shared=shared, used=used, available=state.available + held)


def _gpu_wish(plan: Plan) -> str:
    what = f"{plan.gpus} GPU{'s' if plan.gpus > 1 else ''}"
    if plan.min_vram_bytes:
        what += f" with {_gib(plan.min_vram_bytes)} free"
    if plan.gpu_share:
        what += " (shared)"
    return what


def _gib(size: int) -> str:
    """Memory, disk and GPU memory in the plan table's units (jobctl's): 512 MiB, 9.3 GiB."""
    unit, name = (GIB, "GiB") if size >= GIB else (MIB, "MiB")
    return f"{round(size / unit, 1):g} {name}"


# -- the node as runs hold it ------------------------------------------------------------


def free_on(node: NodeInventory, active: Iterable[Run]) -> Free:
    """What is free once the active runs hold what they were given. GPU processes inside
    the runs' containers are theirs; other processes are foreign."""
    holding = [r for r in active if r.status.holds_resources]
    by_container = {r.container_id: r.id for r in holding if r.container_id}
    process_runs = {
        pid: by_container[cid]
        for pid, cid in node.process_containers.items()
        if cid in by_container
    }
    used_cores = {c for r in holding for c in (r.allocation.cores if r.allocation else ())}
    free = Free(
        cpus=node.cpus - sum(r.plan.cpus for r in holding),
        memory_bytes=node.memory_bytes - sum(r.plan.memory_bytes for r in holding),
        # what active runs wrote is already gone from the free figure: count promises
        # against the whole disk, and never more than is free
        storage_bytes=min(
            node.disk_free_bytes,
            node.disk_total_bytes - sum(r.plan.storage_bytes for r in holding),
        ),
        cores=frozenset(node.core_ids) - used_cores,
        gpus=tuple(_gpu_state(g, holding, process_runs) for g in node.gpus.gpus),
    )
    return free


def _gpu_state(gpu: Gpu, runs: list[Run], process_runs: Mapping[int, str]) -> GpuState:
    exclusive = None
    shared: dict[str, int] = {}
    for run in runs:
        for grant in run.allocation.gpus if run.allocation else ():
            if grant.uuid != gpu.uuid:
                continue
            if grant.shared:
                shared[run.id] = grant.vram_bytes
            else:
                exclusive = run.id
    used: dict[str, int] = {}
    foreign_bytes, foreign_pids = 0, []
    for process in gpu.processes:
        owner = process_runs.get(process.pid)
        if owner is not None and (owner == exclusive or owner in shared):
            used[owner] = used.get(owner, 0) + (process.used_bytes or 0)
        else:
            foreign_bytes += process.used_bytes or 0
            foreign_pids.append(process.pid)
    # memory in use that no process NVML lists explains (processes of other namespaces or
    # users it does not show) is someone else's, beyond what the driver itself keeps
    listed = sum(p.used_bytes or 0 for p in gpu.processes)
    hidden = gpu.memory_used - listed
    if hidden > DRIVER_RESERVE_BYTES:
        foreign_bytes += hidden
    promised = sum(max(0, want - used.get(run_id, 0)) for run_id, want in shared.items())
    # signed: promises may exceed what NVML calls free; releasing one gives back exactly it
    available = 0 if exclusive else gpu.memory_free - promised
    return GpuState(
        gpu=gpu,
        exclusive=exclusive,
        shared=shared,
        used=used,
        foreign_bytes=foreign_bytes,
        foreign_pids=tuple(foreign_pids),
        available=available,
    )


# -- the pass -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What one pass decided: the runs to start with what they get, and why the runs it
    looked at and left wait."""

    start: list[tuple[Run, Allocation]] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)
    truncated: bool = False  # it stopped at its depth with room left: look further soon


def never_fits(plan: Plan, node: NodeInventory) -> str | None:
    """Why the plan could not run on this node even if it were idle, or None."""
    gpus = node.gpus.gpus
    big_enough = [g for g in gpus if g.memory_total >= plan.min_vram_bytes]
    unknown = not node.gpus.certain  # GPUs could not be read just now: don't judge by them
    problems = []
    if plan.cpus > node.cpus:
        problems.append(f"{plan.cpus:g} CPUs (the machine has {node.cpus})")
    if plan.memory_bytes > node.memory_bytes:
        problems.append(f"{_gib(plan.memory_bytes)} of memory (it has {_gib(node.memory_bytes)})")
    if plan.storage_bytes > node.disk_total_bytes:
        disk = _gib(node.disk_total_bytes)
        problems.append(f"{_gib(plan.storage_bytes)} of disk (it has {disk})")
    if plan.gpus > len(big_enough) and not unknown:
        problems.append(f"{_gpu_wish(plan)} (it has {_gpu_count(gpus, plan)})")
    return "; ".join(problems) or None


def _gpu_count(gpus: tuple[Gpu, ...], plan: Plan) -> str:
    if not plan.min_vram_bytes:
        return f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}"
    big = sum(1 for g in gpus if g.memory_total >= plan.min_vram_bytes)
    return f"{len(gpus)} GPUs, {big} with {_gib(plan.min_vram_bytes)}"
