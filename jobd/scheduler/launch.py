"""Launching a placed run, each launch a named task of its own: its GPUs as CDI devices, its
image (fetched once, then remembered), its container created (limits and devices in place, its
process not started), the devices checked inside it, and then started. Any step that fails
ends the run with a reason; none leaves it assigned, nor its container behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from jobd.config import Config
from jobd.domain.engine import RuntimeInfo
from jobd.domain.identity import Identity, user_problem
from jobd.domain.jobs import Job, JobSpec
from jobd.domain.outputs import OUTPUTS_TARGET
from jobd.domain.owners import EVERYONE, Owner, Reach
from jobd.domain.records import now
from jobd.domain.resources import Limits
from jobd.domain.runs import Run
from jobd.domain.ssh import publish_address_for
from jobd.domain.states import FailureType, RunStatus
from jobd.domain.volumes import HostMount
from jobd.errors import Forbidden, ImageNotFound, JobdError, NotFound, RuntimeFailure
from jobd.logs.pump import LogPump
from jobd.logs.stream import RunFields
from jobd.node.accounts import identity_for
from jobd.node.cdi import load_registry, max_cdi_version
from jobd.node.inventory import Inventory
from jobd.node.mounts import resolved
from jobd.node.outputs import make_outputs_dir
from jobd.node.passthrough import Passthrough, mentions_devices, passthrough
from jobd.node.uploads import input_mounts
from jobd.runtime.contract import ContainerRuntime, ContainerSpec, ContainerState, Handle
from jobd.scheduler.endings import Endings, shielded
from jobd.scheduler.inflight import InFlight
from jobd.scheduler.ports import PortGuard
from jobd.store import Store
from jobd.users import name_or

log = logging.getLogger(__name__)
NOFILE = 4096


class Launcher:
    def __init__(
        self,
        *,
        store: Store,
        runtime: ContainerRuntime,
        pump: LogPump,
        config: Config,
        inventory: Inventory,
        info: RuntimeInfo,
        inflight: InFlight,
        endings: Endings,
        started: Callable[[str, int | None], None],
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.pump = pump
        self.config = config
        self.inventory = inventory
        self.info = info
        self.inflight = inflight
        self.endings = endings
        self.started = started  # (run id, its process): the sampler finds its cgroup
        # runs' published ports kept to their jobs' allowedIps (the supervisor steps it too)
        self.ports = PortGuard(runtime=runtime, config=config, info=info)
        self._image_lock = asyncio.Lock()
        self._images: set[str] = set()  # seen present in the runtime's storage

    def launch(self, run: Run) -> None:
        """Launch the placed run in a task of its own."""
        task = asyncio.create_task(self._launch(run), name=f"launch-{run.id}")
        self.inflight.launching[run.id] = task

    async def _launch(self, run: Run) -> None:
        try:
            await self._launch_steps(run)
        except asyncio.CancelledError:
            raise  # shutdown: the run stays assigned; the next start requeues or adopts it
        except Exception as e:  # never leave a run stuck in assigned, nor its container behind
            log.exception("launching %s failed", run.id)
            await self.endings.abandon(run.id)
            await self.endings.fail(run, FailureType.RUNTIME_ERROR, f"launch failed: {e}")
        finally:
            self.inflight.launching.pop(run.id, None)
            container_id = self.inflight.deferred.pop(run.id, None)
            if container_id is not None:
                self.inflight.reap_later(run.id, container_id)
            self.inflight.wake()

    async def _launch_steps(self, run: Run) -> None:
        job = await self.store.get_job(run.job_id, reach=EVERYONE)
        devices = await self._passthrough(run)
        if devices is None:
            return
        given = await self._on_the_host(run, job)
        if given is None:
            return
        identity, mounts = given
        spec = self._container_spec(run, job, devices, mounts, identity)
        try:
            container_id = await self._create(spec)
        except ImageNotFound as e:
            await self.endings.fail(run, FailureType.IMAGE_NOT_FOUND, str(e))
            return
        except RuntimeFailure as e:
            gpus = devices.names and mentions_devices(str(e))
            kind = FailureType.GPU_UNAVAILABLE if gpus else FailureType.RUNTIME_ERROR
            await self.endings.fail(run, kind, str(e))
            return
        recorded = await self.store.update_run(
            run.id,
            detail="container created",
            expect={RunStatus.ASSIGNED},
            container_id=container_id,
            limits=self._limits(run, identity),
        )
        if not recorded:
            await self._drop_unstarted(run, container_id)
            return
        if not await self._verify_devices(run, container_id, devices):
            return
        self.pump.track(run.id, stream_fields(run), run.progress)
        await self._start(run, container_id)

    async def _passthrough(self, run: Run) -> Passthrough | None:
        """The run's GPUs as CDI devices; None when they can't be given (the run failed
        gpu_unavailable)."""
        if run.allocation is None or not run.allocation.gpus:
            return Passthrough()
        settings = self.config.gpus
        registry = await asyncio.to_thread(
            load_registry, settings.cdi_spec_dirs, max_cdi_version(self.info.version)
        )
        found = passthrough(run.allocation, registry, settings)
        if isinstance(found, str):
            await self.endings.fail(run, FailureType.GPU_UNAVAILABLE, found)
            return None
        return found

    async def _on_the_host(
        self, run: Run, job: Job
    ) -> tuple[Identity, tuple[HostMount, ...]] | None:
        """Who the run is on the host, and what of the host it mounts; None when the run
        failed instead."""
        identity = await self._identity(run, job)
        if identity is None:
            return None
        mounts = await self._mounts(run, job.owner, run.spec or job.spec, identity)
        return None if mounts is None else (identity, mounts)

    async def _identity(self, run: Run, job: Job) -> Identity | None:
        """Who the run's process is on the host: its owner, on the system daemon; None when
        it can't be (the run failed): the owner is gone from the machine, or the job's `user`
        is no longer one of theirs."""
        spec = run.spec or job.spec
        try:
            identity = identity_for(job.owner.uid, rootless=self.info.rootless)
        except JobdError as e:
            await self.endings.fail(run, FailureType.RUNTIME_ERROR, f"{e}; it was not started")
            return None
        problem = user_problem(spec.user, identity)
        if problem:
            await self.endings.fail(run, FailureType.RUNTIME_ERROR, f"{problem}; not started")
            return None
        return identity.as_user(spec.user)

    async def _mounts(
        self, run: Run, owner: Owner, spec: JobSpec, identity: Identity
    ) -> tuple[HostMount, ...] | None:
        """The run's volumes on this machine, named ones made on first use, its inputs, read
        only, and its own /outputs; None when one can't be mounted (the run failed): a host
        path gone, no longer allowed or no longer reachable by the run's user, or a named
        volume not its owner's."""
        try:
            await self._check_volume_owners(spec, owner)
            volumes = await asyncio.to_thread(resolved, spec.volumes, self.config, identity)
            inputs = await asyncio.to_thread(input_mounts, spec.inputs, self.config)
        except JobdError as e:
            await self.endings.fail(run, FailureType.RUNTIME_ERROR, f"{e}; it was not started")
            return None
        outputs = await asyncio.to_thread(make_outputs_dir, run.id, self.config)
        return (*volumes, *inputs, HostMount(host_path=str(outputs), target=OUTPUTS_TARGET))

    async def _check_volume_owners(self, spec: JobSpec, owner: Owner) -> None:
        """A run mounts only its owner's named volumes. Its job was checked when it was made;
        a volume deleted since, and made again by someone else, is not mounted."""
        for mount in spec.volumes:
            if mount.host_path:
                continue
            try:
                await self.store.get_volume(mount.source, reach=Reach(owner.uid))
            except NotFound:
                raise Forbidden(f"volume {mount.source!r} belongs to another user") from None

    async def _verify_devices(self, run: Run, container_id: Handle, devices: Passthrough) -> bool:
        """Before the container's process starts (it is created, its namespaces exist):
        its GPUs' device nodes are there, and no other GPU's. Otherwise it fails
        gpu_unavailable and never runs."""
        if not devices.devices:
            return True
        pid = (await self.runtime.inspect(container_id)).pid
        root = Path(f"/proc/{pid}/root")
        try:
            problem = (
                await asyncio.to_thread(devices.check, root)
                if pid
                else "podman gave no process to look into"
            )
        except PermissionError as e:  # can't look inside: podman's CDI injection is trusted
            log.warning("%s: could not check its GPU devices (%s)", run.id, e)
            return True
        if problem is None:
            return True
        await self.endings.abandon(run.id, container_id)
        await self.endings.fail(run, FailureType.GPU_UNAVAILABLE, f"{problem}; it was not started")
        return False

    async def _drop_unstarted(self, run: Run, container_id: Handle) -> None:
        """Cancelled while its container was created: the container never starts."""
        await self.endings.abandon(run.id, container_id)
        await self.endings.end_cancelled(run, "cancelled before its container started")

    async def _start(self, run: Run, container_id: Handle) -> None:
        if (await self.store.get_run(run.id, reach=EVERYONE)).status is not RunStatus.ASSIGNED:
            await self._drop_unstarted(run, container_id)
            return
        try:
            await self.ports.before_start(run, container_id)
            await self.runtime.start(container_id)
        except RuntimeFailure as e:
            await self.endings.abandon(run.id, container_id)
            await self.endings.fail(run, FailureType.RUNTIME_ERROR, f"start failed: {e}")
            return
        state = await self._state_after_start(container_id)
        self.started(run.id, state.pid if state else None)
        started = (state.started_at if state else None) or now()
        await shielded(
            self.store.transition(
                run.id,
                RunStatus.RUNNING,
                expect={RunStatus.ASSIGNED},
                detail="container started",
                started_at=started,
                deadline_at=started + timedelta(seconds=run.timeout_seconds),
                endpoints=dict(state.endpoints) if state and state.endpoints else None,
                ssh=self.config.ssh.endpoint if run.spec and run.spec.ssh_keys else None,
            )
        )  # refused when cancelled meanwhile: apply_cancellations stops it once we are done
        if state is None or state.exited:  # reaped from what the runtime says then
            self.inflight.reap_later(run.id, container_id)

    async def _state_after_start(self, container_id: Handle) -> ContainerState | None:
        """The container's state once started, or None when the runtime could not tell: an
        inspect racing a process that exits at once can fail (podman 4.3: "read
        /proc/N/cgroup: no such process"). The start worked; the reap finds out the rest."""
        try:
            return await self.runtime.inspect(container_id)
        except RuntimeFailure as e:
            log.info("inspecting %s right after its start failed (%s); reaping it", container_id, e)
            return None

    # -- images -----------------------------------------------------------------------------

    async def _create(self, spec: ContainerSpec) -> Handle:
        """Create the container, getting its image first where needed. Images seen present
        are not asked about again; one removed behind jobd's back is fetched again once."""
        try:
            await self._ensure_image(spec.image)
            return await self.runtime.create(spec)
        except ImageNotFound:
            if spec.image not in self._images:
                raise
            self._images.discard(spec.image)
            await self._ensure_image(spec.image)
            return await self.runtime.create(spec)

    async def _ensure_image(self, image: str) -> None:
        if image not in self._images:
            await self._fetch_image(image)
            self._images.add(image)

    async def _fetch_image(self, image: str) -> None:
        if await self.runtime.image_exists(image):
            return
        async with self._image_lock:
            if await self.runtime.image_exists(image):
                return
            await self.runtime.fetch_image(image)

    # -- what the container is given --------------------------------------------------------

    def _container_spec(
        self,
        run: Run,
        job: Job,
        devices: Passthrough,
        mounts: tuple[HostMount, ...],
        identity: Identity,
    ) -> ContainerSpec:
        spec = run.spec or job.spec  # what the run was created to execute
        return ContainerSpec(
            name=run.id,
            run_id=run.id,
            job_id=run.job_id,
            image=spec.image_to_run,
            command=spec.command,
            env={
                **spec.env,
                **spec.secret_env,
                **Passthrough.env(run.allocation, self._node_has_gpus),
                **_array_env(run, spec),
            },
            devices=devices.names,
            cpu_set=run.allocation.cpu_set if run.allocation else None,
            memory_bytes=run.plan.memory_bytes,
            cpus=run.plan.cpus,
            pids_limit=run.plan.pids_limit,
            nofile=NOFILE,
            nproc=run.plan.pids_limit,
            network=spec.network,
            log_path=self.pump.prepare(run.id),
            stop_grace_seconds=self.config.stop_grace_seconds,
            ports=spec.ports,
            publish_address=publish_address_for(
                spec.allowed_ips, self.config.publish_address, firewall=self.ports.enabled
            ),
            mounts=mounts,
            working_dir=spec.working_dir,
            # an owner's run is the owner: the job's user names them, perhaps with a group
            user=spec.user
            if spec.user and (":" in spec.user or not identity.user)
            else identity.user,
            groups=identity.groups,
            capabilities=identity.capabilities,
        )

    @property
    def _node_has_gpus(self) -> bool:
        node = self.inventory.last
        return node is not None and bool(node.gpus.gpus)

    def _limits(self, run: Run, identity: Identity) -> Limits:
        return Limits(
            memory_bytes=run.plan.memory_bytes,
            cpus=run.plan.cpus,
            pids_limit=run.plan.pids_limit,
            nofile=NOFILE,
            nproc=run.plan.pids_limit,
            enforced=self.info.limits_enforced,
            note=self.info.limits_note,
            identity=identity,
        )


def stream_fields(run: Run) -> RunFields:
    """Who a run's log lines belong to, in the log stream ([log_stream])."""
    return RunFields(run_id=run.id, job_id=run.job_id, owner=name_or(run.owner_uid, ""))


def _array_env(run: Run, spec: JobSpec) -> dict[str, str]:
    """An array's run is told its index and the array's size (Slurm's SLURM_ARRAY_TASK_ID)."""
    if run.array_index is None or spec.array is None:
        return {}
    return {"JOBD_ARRAY_INDEX": str(run.array_index), "JOBD_ARRAY_SIZE": str(spec.array.size)}
