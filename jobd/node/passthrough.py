"""GPU passthrough: a run's GPUs reach its container as CDI devices (the NVIDIA Container
Toolkit's convention, `nvidia.com/gpu=<uuid|index>`), and jobd checks they did before the run
counts as running — a GPU job never falls back to the CPU in silence."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from jobd.config.tables import GpuSettings
from jobd.domain.resources import Allocation, GpuGrant
from jobd.node.cdi import CdiDevice, CdiRegistry

VISIBLE_DEVICES = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


@dataclass(frozen=True, slots=True, kw_only=True)
class Passthrough:
    """A run's GPUs as CDI devices: their names for podman, and the device nodes each puts in
    the container (to check), with those of the kind's other devices (to check absent)."""

    devices: tuple[CdiDevice, ...] = ()
    others: tuple[CdiDevice, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.devices)

    @staticmethod
    def env(allocation: Allocation | None, node_has_gpus: bool) -> dict[str, str]:
        """The container's view matches what it was given: its GPUs by UUID (CUDA takes
        UUIDs, so the numbering inside the container does not matter). A run without GPUs
        on a GPU machine gets "void", so that NVIDIA's legacy hook, where installed, gives
        it none (CUDA images say NVIDIA_VISIBLE_DEVICES=all)."""
        gpus = allocation.gpus if allocation else ()
        if not gpus:
            return {"NVIDIA_VISIBLE_DEVICES": "void"} if node_has_gpus else {}
        uuids = ",".join(g.uuid for g in gpus)
        return dict.fromkeys(VISIBLE_DEVICES, uuids)

    def check(self, root: Path) -> str | None:
        """What is wrong with the container whose root filesystem is `root` (a process's
        /proc/PID/root): a GPU's node missing, or another GPU's node present; None: fine."""
        wanted = {node.path for device in self.devices for node in device.nodes}
        theirs = {node.path for device in self.others for node in device.nodes} - wanted
        missing = sorted(path for path in wanted if not _is_device(root, path))
        if missing:
            return f"its GPU device nodes are missing in the container: {', '.join(missing)}"
        extra = sorted(path for path in theirs if _is_device(root, path))
        if extra:
            return f"the container sees GPUs it was not given: {', '.join(extra)}"
        return None


def _is_device(root: Path, path: str) -> bool:
    try:
        mode = (root / path.lstrip("/")).stat().st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def passthrough(
    allocation: Allocation, registry: CdiRegistry, settings: GpuSettings
) -> Passthrough | str:
    """The CDI devices for the run's GPUs, or why they can't be given."""
    devices = []
    for grant in allocation.gpus:
        device = _device(grant, registry, settings)
        if device is None:
            return _missing(grant, registry, settings)
        devices.append(device)
    chosen = {d.name for d in devices}
    mine = {node.path for d in devices for node in d.nodes}
    others = [
        d
        for name in sorted(registry.names(settings.cdi_kind))
        if name not in chosen
        and (d := registry.device(name)) is not None
        and not {node.path for node in d.nodes} & mine  # "all", or another name of the same GPU
    ]
    return Passthrough(devices=tuple(devices), others=tuple(others))


def _names(grant: GpuGrant, settings: GpuSettings) -> list[str]:
    """The CDI device names that may stand for the GPU, in the order they are tried."""
    by = {"uuid": [grant.uuid], "index": [grant.index], "auto": [grant.uuid, grant.index]}
    return [f"{settings.cdi_kind}={name}" for name in by[settings.cdi_device_name]]


def _device(grant: GpuGrant, registry: CdiRegistry, settings: GpuSettings) -> CdiDevice | None:
    found = (registry.device(name) for name in _names(grant, settings))
    return next((device for device in found if device is not None), None)


def _missing(grant: GpuGrant, registry: CdiRegistry, settings: GpuSettings) -> str:
    wanted = " or ".join(_names(grant, settings))
    where = ", ".join(str(d) for d in settings.cdi_spec_dirs)
    problems = f" ({'; '.join(registry.problems)})" if registry.problems else ""
    return (
        f"GPU {grant.index} ({grant.uuid}) has no CDI device {wanted} in the specs podman"
        f" reads ({where}){problems}; generate one: nvidia-ctk cdi generate"
        " --output=/etc/cdi/nvidia.yaml"
    )


def mentions_devices(message: str) -> bool:
    """Whether podman's error is about the CDI devices: an unresolvable name, or a device
    node missing on the host (runc: "error gathering device information while adding
    custom device"). Not "no space left on device"."""
    lowered = message.lower()
    return "cdi" in lowered or "custom device" in lowered
