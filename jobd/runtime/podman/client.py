"""The podman runtime: create/init/start, watch exits, stop, remove, inspect, list, recover, exec
(and, for the SSH gateway, a container's files and TCP connections inside it: inside.py).

podman-py blocks (requests under the hood), so every call runs in a bounded thread pool, and the
event stream runs in one thread of its own (events.py). Podman's dicts and exceptions never
leave this package: translate.py makes them jobd's `ContainerState`/`ContainerExit` and
`RuntimeFailure` subclasses. Each created or adopted container's memory cgroup is watched for
OOM kills (oom.py), which podman 4.3.1 with conmon 2.1.6 never reports itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import podman
import podman.errors

from jobd.domain.engine import RuntimeInfo
from jobd.errors import ContainerGone, ImageNotFound, RuntimeUnavailable
from jobd.runtime.contract import ContainerExit, ContainerSpec, ContainerState, Handle
from jobd.runtime.podman import events, inside
from jobd.runtime.podman.exec import ExecStream
from jobd.runtime.podman.image import DEFAULT_IMAGE, prepare_context, temporary_context
from jobd.runtime.podman.init import INIT_PATH, command_failure
from jobd.runtime.podman.inside import HelperFiles
from jobd.runtime.podman.oom import OomWatch
from jobd.runtime.podman.translate import (
    INSTANCE_LABEL,
    labels,
    repository,
    state_of,
    translated_errors,
)

T = TypeVar("T")
STOP_POLL_SECONDS = 0.25


DEFAULT_NETWORK = "podman"  # the network runs without network none join


class PodmanRuntime:
    def __init__(
        self, socket: Path, *, instance: str, oci_runtime: str | None, workers: int = 8
    ) -> None:
        self._socket = socket
        self.instance = instance
        self._mine = f"{INSTANCE_LABEL}={instance}"  # only this jobd's containers are touched
        self._oci_runtime = oci_runtime
        self._client = podman.PodmanClient(base_url=f"http+unix://{socket}", timeout=120)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="podman")
        self._last_info: tuple[float, RuntimeInfo] | None = None  # (monotonic time, info)
        self._watches: dict[Handle, OomWatch] = {}

    async def close(self) -> None:
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def guarded() -> T:
            with translated_errors(what):
                return fn(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._pool, guarded)

    # -- about podman -------------------------------------------------------------------

    async def info(self, *, max_age: float = 0.0) -> RuntimeInfo:
        """What podman says about itself, asked again only when the last answer is older than
        `max_age` seconds: `podman info` takes a second or two while containers start."""
        if self._last_info is not None and time.monotonic() - self._last_info[0] <= max_age:
            return self._last_info[1]
        info = await self._call("info", self._info)
        self._last_info = (time.monotonic(), info)
        return info

    def _info(self) -> RuntimeInfo:
        version = self._client.version()
        about = self._client.info()
        host = about["host"]
        return RuntimeInfo(
            version=str(version.get("Version", "?")),
            api_version=str(version.get("ApiVersion", "?")),
            rootless=bool(host.get("security", {}).get("rootless", False)),
            cgroup_version=str(host.get("cgroupVersion", "?")),
            cgroup_manager=str(host.get("cgroupManager", "?")),
            cgroup_controllers=tuple(host.get("cgroupControllers") or ()),
            oci_runtime=self._oci_runtime or str(host.get("ociRuntime", {}).get("name", "?")),
            graph_root=str(about.get("store", {}).get("graphRoot", "")),
            init_path=str(INIT_PATH) if INIT_PATH.exists() else None,
            bridge_subnets=self._bridge_subnets(),
        )

    def _bridge_subnets(self) -> tuple[str, ...]:
        """The subnets of podman's default network (named podman), where runs with the
        default network get their addresses; none when it does not exist."""
        try:
            attrs = self._client.networks.get(DEFAULT_NETWORK).attrs
        except podman.errors.NotFound:
            return ()
        return tuple(str(s["subnet"]) for s in attrs.get("subnets") or () if s.get("subnet"))

    # -- images -------------------------------------------------------------------------

    async def image_exists(self, reference: str) -> bool:
        return await self._call("image exists", self._client.images.exists, reference)

    async def image_digest(self, reference: str) -> str | None:
        """The local image `reference` names, as repository@sha256:digest; None when it is
        not in local storage (or has no digest to pin it by)."""
        return await self._call("image inspect", self._image_digest, reference)

    def _image_digest(self, reference: str) -> str | None:
        if not self._client.images.exists(reference):
            return None
        attrs = self._client.images.get(reference).attrs
        digests = [str(d) for d in attrs.get("RepoDigests") or ()]
        same = [d for d in digests if d.split("@")[0] == repository(reference)]
        pinned = same or digests
        return pinned[0] if pinned else None

    async def fetch_image(self, reference: str) -> None:
        """Pull the image; jobd's embedded image is built here instead, from the host's
        static busybox (no registry needed)."""
        if reference == DEFAULT_IMAGE:
            await self._call("build", self._build_default_image)
        else:
            await self._call("pull", self._pull, reference)

    def _build_default_image(self) -> None:
        with temporary_context() as directory:
            context = prepare_context(Path(directory))
            self._client.images.build(
                path=str(context), tag=DEFAULT_IMAGE, dockerfile="Containerfile", rm=True
            )

    def _pull(self, reference: str) -> None:
        # podman-py reports a failed pull in the progress stream, not as an exception
        errors: list[str] = []
        try:
            reports: Any = self._client.images.pull(reference, stream=True, decode=True)
            for report in reports:
                if isinstance(report, dict) and report.get("error"):
                    errors.append(str(report["error"]))
        except (podman.errors.APIError, podman.errors.ImageNotFound) as e:
            errors.append(str(getattr(e, "explanation", None) or e))
        if errors or not self._client.images.exists(reference):
            why = "; ".join(errors) or "the pull produced no image"
            raise ImageNotFound(
                f"image {reference!r} is not in local storage and could not be pulled: {why}"
            )

    # -- exec -----------------------------------------------------------------------------

    async def exec(
        self,
        handle: Handle,
        command: list[str],
        *,
        tty: bool,
        env: Mapping[str, str] | None = None,
    ) -> ExecStream:
        """Run `command` in the running container, attached (see exec.py), with `env` added
        to the container's environment."""
        exec_id = await self._call(
            "exec create", self._exec_create, handle, command, tty, dict(env or {})
        )
        try:
            return await ExecStream.start(
                self._socket,
                exec_id,
                tty=tty,
                resize=functools.partial(self._exec_resize, exec_id),
                exit_code=functools.partial(self._exec_exit_code, exec_id),
            )
        except OSError as e:
            raise RuntimeUnavailable(f"exec start: podman API unreachable: {e}") from e

    def _exec_create(
        self, container_id: str, command: list[str], tty: bool, env: dict[str, str]
    ) -> str:
        body = {
            "Cmd": command,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "AttachStdin": True,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": tty,
        }
        response = self._client.api.post(
            f"/containers/{container_id}/exec",
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        response.raise_for_status()
        return str(response.json()["Id"])

    async def _exec_resize(self, exec_id: str, rows: int, columns: int) -> None:
        await self._call("exec resize", self._post, f"/exec/{exec_id}/resize", h=rows, w=columns)

    async def _exec_exit_code(self, exec_id: str) -> int | None:
        return await self._call("exec inspect", self._read_exec_exit_code, exec_id)

    def _read_exec_exit_code(self, exec_id: str) -> int | None:
        response = self._client.api.get(f"/exec/{exec_id}/json")
        response.raise_for_status()
        code = response.json().get("ExitCode")
        return int(code) if code is not None else None

    async def files(self, handle: Handle, client_version: str) -> HelperFiles:
        """An SFTP server over the running container's files, as its user (inside.py)."""
        return await HelperFiles.start(await self._pid(handle), client_version)

    async def connect(self, handle: Handle, host: str, port: int) -> socket.socket:
        """A TCP connection made inside the running container's network (inside.py)."""
        return await inside.connect(await self._pid(handle), host, port)

    async def _pid(self, handle: Handle) -> int:
        state = await self.inspect(handle)
        if not state.running or not state.pid:
            raise ContainerGone(f"container {handle} is not running")
        return state.pid

    # -- one container's life ---------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> Handle:
        """Create and init the container: its cgroup exists, its process has not started.
        From now until it is removed, its memory cgroup is watched for OOM kills."""
        container_id, pid = await self._call(f"create {spec.name}", self._create, spec)
        self._watch(container_id, pid)
        return container_id

    def _create(self, spec: ContainerSpec) -> tuple[str, int | None]:
        container = self._client.containers.create(spec.image, **self._create_options(spec))
        try:
            container.init()
            container.reload()  # its process id, now that it has one
        except Exception:
            with contextlib.suppress(podman.errors.PodmanError):
                container.remove(force=True)
            raise
        return str(container.id), container.attrs.get("State", {}).get("Pid") or None

    def _create_options(self, spec: ContainerSpec) -> dict[str, Any]:
        options: dict[str, Any] = {
            "name": spec.name,
            "labels": labels(spec, self.instance),
            "environment": dict(spec.env),
            "mem_limit": spec.memory_bytes,
            "memswap_limit": spec.memory_bytes,  # no swap beyond the plan's memory
            "cpu_period": 100_000,
            "cpu_quota": int(spec.cpus * 100_000),  # nano_cpus is silently dropped
            "pids_limit": spec.pids_limit,
            "ulimits": [
                {"Name": "nofile", "Soft": spec.nofile, "Hard": spec.nofile},
                {"Name": "nproc", "Soft": spec.nproc, "Hard": spec.nproc},
            ],
            "log_config": {
                "Type": "k8s-file",
                # no cap (-1 overrides containers.conf): conmon's cap drops the start of the
                # output; jobd's log pump bounds what is kept instead
                "Config": {"path": str(spec.log_path), "size": -1},
            },
            "stop_signal": int(signal.SIGTERM),
            "stop_timeout": spec.stop_grace_seconds,
            "init": True,  # catatonit as PID 1: SIGTERM reaches programs without handlers
            **_identity_options(spec),
            **_placement_options(spec),
        }
        if spec.command:
            options["command"] = list(spec.command)
        if spec.network == "none":
            options["network_mode"] = "none"
        if spec.ports:  # no host port given: podman picks a free one
            options["ports"] = {f"{p}/tcp": {"ip": spec.publish_address} for p in spec.ports}
        if self._oci_runtime:
            options["runtime"] = self._oci_runtime
        if spec.working_dir:
            options["working_dir"] = spec.working_dir
        return options

    async def start(self, handle: Handle) -> None:
        await self._call("start", self._post, f"/containers/{handle}/start")

    def _post(self, path: str, **params: Any) -> None:
        """One API call. podman-py's Container methods inspect the container first (a GET
        per call); by id, jobd needs no Container object."""
        self._client.api.post(path, params=params).raise_for_status()

    async def inspect(self, handle: Handle) -> ContainerState:
        return self._with_oom(await self._call("inspect", self._inspect, handle))

    def _inspect(self, container_id: str) -> ContainerState:
        attrs = self._client.containers.get(container_id).attrs
        state = state_of(attrs)
        failure = command_failure(attrs)
        return dataclasses.replace(state, command_failure=failure) if failure else state

    async def stop(self, handle: Handle, grace_seconds: int) -> None:
        """SIGTERM, then SIGKILL once the grace period is over; no grace: SIGKILL at once
        (a SIGTERM first would end a program without handlers before the SIGKILL came).
        Stopping a gone container succeeds. The grace period is waited here, not in a pool
        thread: a hundred stops must not park a hundred threads."""
        with contextlib.suppress(ContainerGone):
            if grace_seconds <= 0:
                await self._call("kill", self._signal, handle, "SIGKILL")
                return
            await self._call("stop", self._signal, handle, "SIGTERM")
            deadline = time.monotonic() + grace_seconds
            while (left := deadline - time.monotonic()) > 0:
                if not (await self.inspect(handle)).running:
                    return
                await asyncio.sleep(min(STOP_POLL_SECONDS, left))
            await self._call("kill", self._signal, handle, "SIGKILL")

    def _signal(self, container_id: str, signal_name: str) -> None:
        try:
            self._post(f"/containers/{container_id}/kill", signal=signal_name)
        except podman.errors.APIError as e:
            # 409: not running; a stopped container is what we wanted
            if e.status_code not in (304, 404, 409):
                raise

    async def remove(self, handle: Handle) -> None:
        """Removing a gone container succeeds. Its OOM watch goes with it."""
        watch = self._watches.pop(handle, None)
        if watch is not None:
            watch.close()
        with contextlib.suppress(ContainerGone):
            await self._call("remove", self._remove, handle)

    def _remove(self, container_id: str) -> None:
        self._client.containers.remove(container_id, force=True)  # by id: no inspect first

    # -- OOM kills ----------------------------------------------------------------------

    def adopt(self, state: ContainerState) -> None:
        """A running container created before jobd restarted: watch its cgroup again."""
        self._watch(state.container_id, state.pid)

    def _watch(self, container_id: Handle, pid: int | None) -> None:
        if pid and container_id not in self._watches:
            watch = OomWatch.start(pid)
            if watch is not None:
                self._watches[container_id] = watch

    def _with_oom(self, state: ContainerState) -> ContainerState:
        """An exited container's state says whether its watch saw an OOM kill: podman's own
        flag is never set on podman 4.3.1 with conmon 2.1.6."""
        watch = self._watches.get(state.container_id)
        if state.oom_killed or watch is None or not state.exited or not watch.check():
            return state
        return dataclasses.replace(state, oom_killed=True)

    # -- all of jobd's containers ------------------------------------------------------

    async def list_managed(self) -> list[ContainerState]:
        return [self._with_oom(s) for s in await self._call("list", self._list_managed)]

    def _list_managed(self) -> list[ContainerState]:
        # podman-py mangles a list of label filters: one string
        found = self._client.containers.list(all=True, filters={"label": self._mine})
        states = []
        for summary in found:
            with contextlib.suppress(podman.errors.NotFound):
                states.append(self._inspect(summary.id))
        return states

    def exits(self, since: float) -> AsyncIterator[ContainerExit]:
        """Every death of this jobd's containers from `since` on, forever (events.py)."""
        return events.exits(self._socket, self._mine, since)


def _identity_options(spec: ContainerSpec) -> dict[str, Any]:
    """Who its process is, and what it may do: nothing in it gains privileges (setuid
    binaries, file capabilities), and it keeps only the capabilities it is given
    (security_opt is ignored here: ENVIRONMENT.md)."""
    options: dict[str, Any] = {"no_new_privileges": True, "cap_drop": ["ALL"]}
    if spec.capabilities:
        options["cap_add"] = list(spec.capabilities)
    if spec.user:
        options["user"] = spec.user
    if spec.groups:
        options["group_add"] = [str(g) for g in spec.groups]
    return options


def _placement_options(spec: ContainerSpec) -> dict[str, Any]:
    """What it is given of the machine: GPUs (CDI devices), cores, host directories."""
    options: dict[str, Any] = {}
    if spec.devices:
        options["devices"] = list(spec.devices)
    if spec.cpu_set:
        options["cpuset_cpus"] = spec.cpu_set
    if spec.mounts:
        options["mounts"] = [
            {"type": "bind", "source": m.host_path, "target": m.target, "read_only": m.read_only}
            for m in spec.mounts
        ]
    return options
