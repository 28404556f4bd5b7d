"""The podman runtime: create/init/start, watch exits, stop, remove, inspect, list, recover.

podman-py blocks (requests under the hood), so every call runs in a bounded thread pool, and the
event stream runs in one thread of its own. Podman's dicts and exceptions never leave this
module: they become jobd's `ContainerState`/`ContainerExit` and `RuntimeFailure` subclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import podman
import podman.errors
import requests.exceptions

from jobd.errors import ContainerGone, ImageNotFound, RuntimeFailure, RuntimeUnavailable
from jobd.runtime.exec import ExecStream
from jobd.runtime.types import (
    INSTANCE_LABEL,
    RUN_LABEL,
    ContainerExit,
    ContainerSpec,
    ContainerState,
    RuntimeInfo,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
ZERO_TIME = "0001-01-01"
STOP_POLL_SECONDS = 0.25


@contextlib.contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Map podman-py and requests exceptions to jobd's runtime errors."""
    try:
        yield
    except podman.errors.ImageNotFound as e:
        raise ImageNotFound(f"{what}: image not found: {e}") from e
    except podman.errors.NotFound as e:
        raise ContainerGone(f"{what}: {e}") from e
    except (requests.exceptions.ConnectionError, podman.errors.APIError) as e:
        if isinstance(e, podman.errors.APIError) and e.status_code is not None:
            raise _api_failure(what, e) from e
        raise RuntimeUnavailable(f"{what}: podman API unreachable: {e}") from e
    except (podman.errors.PodmanError, requests.exceptions.RequestException) as e:
        raise RuntimeFailure(f"{what}: {e}") from e


def _api_failure(what: str, e: podman.errors.APIError) -> RuntimeFailure:
    text = str(e.explanation or e)
    if e.status_code == 404 and "image" in text.lower():
        return ImageNotFound(f"{what}: {text}")
    if e.status_code == 404:
        return ContainerGone(f"{what}: {text}")
    return RuntimeFailure(f"{what}: {text}")


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

    async def close(self) -> None:
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
        )

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
        same = [d for d in digests if d.split("@")[0] == _repository(reference)]
        pinned = same or digests
        return pinned[0] if pinned else None

    # -- exec -----------------------------------------------------------------------------

    async def exec_start(self, container_id: str, command: list[str], *, tty: bool) -> ExecStream:
        """Run `command` in the running container, attached (see jobd/runtime/exec.py)."""
        exec_id = await self._call("exec create", self._exec_create, container_id, command, tty)
        try:
            return await ExecStream.start(self._socket, exec_id, tty=tty)
        except OSError as e:
            raise RuntimeUnavailable(f"exec start: podman API unreachable: {e}") from e

    def _exec_create(self, container_id: str, command: list[str], tty: bool) -> str:
        body = {
            "Cmd": command,
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

    async def exec_resize(self, exec_id: str, rows: int, columns: int) -> None:
        await self._call("exec resize", self._post, f"/exec/{exec_id}/resize", h=rows, w=columns)

    async def exec_exit_code(self, exec_id: str) -> int | None:
        return await self._call("exec inspect", self._exec_exit_code, exec_id)

    def _exec_exit_code(self, exec_id: str) -> int | None:
        response = self._client.api.get(f"/exec/{exec_id}/json")
        response.raise_for_status()
        code = response.json().get("ExitCode")
        return int(code) if code is not None else None

    async def pull(self, reference: str) -> None:
        await self._call("pull", self._pull, reference)

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

    async def build_image(self, context: Path, tag: str) -> None:
        await self._call(
            "build",
            self._client.images.build,
            path=str(context),
            tag=tag,
            dockerfile="Containerfile",
            rm=True,
        )

    # -- one container's life ---------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        """Create and init the container: its cgroup exists, its process has not started."""
        return await self._call(f"create {spec.name}", self._create, spec)

    def _create(self, spec: ContainerSpec) -> str:
        options: dict[str, Any] = {
            "name": spec.name,
            "labels": spec.all_labels,
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
        }
        if spec.command:
            options["command"] = list(spec.command)
        if spec.network == "none":
            options["network_mode"] = "none"
        if spec.ports:  # no host port given: podman picks a free one
            options["ports"] = {f"{p}/tcp": {"ip": spec.publish_address} for p in spec.ports}
        if self._oci_runtime:
            options["runtime"] = self._oci_runtime
        if spec.devices:
            options["devices"] = list(spec.devices)
        if spec.cpu_set:
            options["cpuset_cpus"] = spec.cpu_set
        container = self._client.containers.create(spec.image, **options)
        try:
            container.init()
        except Exception:
            with contextlib.suppress(podman.errors.PodmanError):
                container.remove(force=True)
            raise
        return str(container.id)

    async def start(self, container_id: str) -> None:
        await self._call("start", self._post, f"/containers/{container_id}/start")

    def _post(self, path: str, **params: Any) -> None:
        """One API call. podman-py's Container methods inspect the container first (a GET
        per call); by id, jobd needs no Container object."""
        self._client.api.post(path, params=params).raise_for_status()

    async def inspect(self, container_id: str) -> ContainerState:
        return await self._call("inspect", self._inspect, container_id)

    def _inspect(self, container_id: str) -> ContainerState:
        container = self._client.containers.get(container_id)
        return _state(container.attrs)

    async def stop(self, container_id: str, grace_seconds: int) -> None:
        """SIGTERM, then SIGKILL once the grace period is over. Stopping a gone container
        succeeds. The grace period is waited here, not in a pool thread: a hundred stops
        must not park a hundred threads."""
        with contextlib.suppress(ContainerGone):
            await self._call("stop", self._signal, container_id, "SIGTERM")
            deadline = time.monotonic() + grace_seconds
            while (left := deadline - time.monotonic()) > 0:
                if not (await self.inspect(container_id)).running:
                    return
                await asyncio.sleep(min(STOP_POLL_SECONDS, left))
            await self._call("kill", self._signal, container_id, "SIGKILL")

    def _signal(self, container_id: str, signal_name: str) -> None:
        try:
            self._post(f"/containers/{container_id}/kill", signal=signal_name)
        except podman.errors.APIError as e:
            # 409: not running; a stopped container is what we wanted
            if e.status_code not in (304, 404, 409):
                raise

    async def remove(self, container_id: str) -> None:
        """Removing a gone container succeeds."""
        with contextlib.suppress(ContainerGone):
            await self._call("remove", self._remove, container_id)

    def _remove(self, container_id: str) -> None:
        self._client.containers.remove(container_id, force=True)  # by id: no inspect first

    # -- all of jobd's containers ------------------------------------------------------

    async def list_managed(self) -> list[ContainerState]:
        return await self._call("list", self._list_managed)

    def _list_managed(self) -> list[ContainerState]:
        # podman-py mangles a list of label filters: one string
        found = self._client.containers.list(all=True, filters={"label": self._mine})
        states = []
        for summary in found:
            with contextlib.suppress(podman.errors.NotFound):
                states.append(self._inspect(summary.id))
        return states

    async def exits(self, since: float) -> AsyncIterator[ContainerExit]:
        """Every death of a jobd container from `since` on, forever. Reconnects (replaying with
        since=) when the stream breaks; a death may be reported twice, never missed."""
        queue: asyncio.Queue[ContainerExit] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def emit(exit_: ContainerExit) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, exit_)

        thread = threading.Thread(
            target=self._follow_events,
            args=(since, emit, stop),
            name="podman-events",
            daemon=True,
        )
        thread.start()
        try:
            while True:
                yield await queue.get()
        finally:
            stop.set()

    def _follow_events(
        self, since: float, emit: Callable[[ContainerExit], Any], stop: threading.Event
    ) -> None:
        client = podman.PodmanClient(base_url=f"http+unix://{self._socket}", timeout=None)
        last = since
        while not stop.is_set():
            try:
                for event in client.events(
                    since=int(last) - 1,
                    filters=["type=container", "event=died", f"label={self._mine}"],
                    decode=True,
                ):
                    if stop.is_set():
                        return
                    last = max(last, float(event.get("time", last)))
                    exit_ = _exit_event(event)
                    if exit_ is not None:
                        emit(exit_)
            except Exception as e:  # the stream broke (podman restarted?): replay with since=
                log.warning("podman event stream broke (%s); reconnecting", e)
                stop.wait(1.0)
        client.close()


def _exit_event(event: dict[str, Any]) -> ContainerExit | None:
    actor = event.get("Actor", {})
    attributes = actor.get("Attributes", {})
    run_id = attributes.get(RUN_LABEL)
    if not run_id:
        return None
    code = attributes.get("containerExitCode")
    return ContainerExit(
        container_id=actor.get("ID", ""),
        run_id=run_id,
        exit_code=int(code) if code not in (None, "") else None,
    )


def _state(attrs: dict[str, Any]) -> ContainerState:
    state = attrs.get("State", {})
    labels = attrs.get("Config", {}).get("Labels") or {}
    status = str(state.get("Status", "unknown"))
    return ContainerState(
        container_id=str(attrs["Id"]),
        run_id=labels.get(RUN_LABEL),
        status=status,
        exit_code=state.get("ExitCode") if status in {"exited", "stopped"} else None,
        started_at=_timestamp(state.get("StartedAt")),
        finished_at=_timestamp(state.get("FinishedAt")),
        oom_killed=bool(state.get("OOMKilled", False)),
        pid=state.get("Pid") or None,
        endpoints=_endpoints(attrs.get("NetworkSettings", {}).get("Ports") or {}),
    )


def _endpoints(ports: dict[str, Any]) -> dict[int, str]:
    """{"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41234"}]} -> {8080: "127.0.0.1:41234"}"""
    found: dict[int, str] = {}
    for key, bindings in ports.items():
        port, _, protocol = key.partition("/")
        for binding in bindings or ():
            if protocol in ("", "tcp") and binding.get("HostPort"):
                host = binding.get("HostIp") or "0.0.0.0"
                found[int(port)] = f"{host}:{binding['HostPort']}"
    return found


def _timestamp(value: str | None) -> datetime | None:
    if not value or value.startswith(ZERO_TIME):
        return None
    return datetime.fromisoformat(value)


def _answers(socket: Path) -> bool:
    try:
        with podman.PodmanClient(base_url=f"http+unix://{socket}", timeout=2) as client:
            return bool(client.ping())
    except (podman.errors.PodmanError, requests.exceptions.RequestException, OSError):
        return False  # not up yet


def wait_for_socket(socket: Path, timeout: float) -> bool:
    """Block until the podman API answers on `socket`, up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if socket.exists() and _answers(socket):
            return True
        time.sleep(0.05)
    return False


def _repository(reference: str) -> str:
    """localhost:5000/team/app:1.2 -> localhost:5000/team/app (the tag or digest goes)."""
    name = reference.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
