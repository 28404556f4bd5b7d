"""Reading the GPUs: from NVML (the NVIDIA driver's library, through pynvml), or from a JSON
file in the same shapes, for machines without NVIDIA GPUs and for tests. Reads block: the
daemon calls them in a thread. A read never raises; what went wrong is the inventory's `error`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from jobd.domain.node import Gpu, GpuInventory, GpuProcess

__all__ = [
    "NVML_MISSING",
    "FileSource",
    "GpuSource",
    "NvmlSource",
    "container_of",
    "gpu_source",
]

log = logging.getLogger(__name__)

NVML_MISSING = (
    "NVML library not found (libnvidia-ml.so.1): no NVIDIA driver here; running without GPUs"
)
# exactly 64 hex digits, not part of a longer run: podman's container ids in cgroup paths
_CONTAINER_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


class GpuSource(Protocol):
    def read(self) -> GpuInventory: ...


def gpu_source(inventory_file: Path | None) -> GpuSource:
    """The GPUs described in `inventory_file` when one is configured, else NVML's."""
    if inventory_file is not None:
        return FileSource(inventory_file)
    return NvmlSource()


# --- NVML ---------------------------------------------------------------------------------


class NvmlSource:
    """The GPUs as NVML sees them now. `nvml` is the pynvml module, or an object with the
    same functions, exception classes and constants (tests)."""

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._started = False
        # NVML handles are shared state: one read at a time
        self._lock = threading.Lock()

    def read(self) -> GpuInventory:
        with self._lock:
            try:
                return self._read()
            except Exception as e:  # a surprise from the bindings must not stop the daemon
                log.exception("reading the GPUs through NVML failed")
                return GpuInventory(error=f"NVML failed unexpectedly: {e!r}", source="nvml")

    def _read(self) -> GpuInventory:
        nvml = self._module()
        if nvml is None:
            return GpuInventory(error=NVML_MISSING, source="nvml", no_driver=True)
        problem = self._start(nvml)
        if problem is not None:
            return GpuInventory(error=problem, source="nvml", no_driver=problem == NVML_MISSING)
        inventory = _read_all(nvml)
        if inventory.error is not None:  # a driver reload? start NVML again next time
            self._started = False
        return inventory

    def _module(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                return None
            self._nvml = pynvml
        return self._nvml

    def _start(self, nvml: Any) -> str | None:
        """Initialise NVML once; after a failure, again at the next read (the driver may have
        been installed or loaded since)."""
        if self._started:
            return None
        try:
            nvml.nvmlInit()
        except nvml.NVMLError_LibraryNotFound:
            return NVML_MISSING
        except nvml.NVMLError as e:
            return f"NVML could not start ({type(e).__name__}: {e}); running without GPUs"
        self._started = True
        return None


def _read_all(nvml: Any) -> GpuInventory:
    try:
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as e:
        return GpuInventory(error=f"NVML could not count the GPUs: {e}", source="nvml")
    gpus = [gpu for index in range(count) for gpu in _read_device(nvml, index)]
    return GpuInventory(gpus=tuple(gpus), source="nvml", driver_version=_driver_version(nvml))


def _driver_version(nvml: Any) -> str | None:
    try:
        return _text(nvml.nvmlSystemGetDriverVersion())
    except nvml.NVMLError:
        return None


def _read_device(nvml: Any, index: int) -> list[Gpu]:
    """GPU `index` whole, or its MIG devices when MIG is on (then the whole GPU can't be
    given to a container). A GPU NVML can't read is left out, not fatal."""
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        if _mig_enabled(nvml, handle):
            return _mig_devices(nvml, handle, index)
        minor = _optional(nvml, nvml.nvmlDeviceGetMinorNumber, handle)
        return [_gpu(nvml, handle, index=str(index), minor=minor)]
    except nvml.NVMLError as e:
        log.warning("GPU %d: NVML could not read it (%s); leaving it out", index, e)
        return []


def _mig_enabled(nvml: Any, handle: Any) -> bool:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError_NotSupported:
        return False
    return bool(current == nvml.NVML_DEVICE_MIG_ENABLE)


def _mig_devices(nvml: Any, handle: Any, index: int) -> list[Gpu]:
    parent = _text(nvml.nvmlDeviceGetUUID(handle))
    found = []
    for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except (nvml.NVMLError_NotFound, nvml.NVMLError_InvalidArgument):
            continue  # an empty slot
        # named by slot, as the NVIDIA Container Toolkit names MIG devices in CDI specs
        # ("<gpu>:<slot>", go-nvlib's VisitMigDevices), so `index` finds the CDI device
        try:
            found.append(_gpu(nvml, mig, index=f"{index}:{slot}", parent_uuid=parent))
        except nvml.NVMLError as e:
            log.warning(
                "MIG device %d:%d: NVML could not read it (%s); leaving it out", index, slot, e
            )
    return found


def _gpu(
    nvml: Any, handle: Any, *, index: str, minor: int | None = None, parent_uuid: str | None = None
) -> Gpu:
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    utilization = _optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
    return Gpu(
        index=index,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory_total=int(memory.total),
        memory_free=int(memory.free),
        utilization=None if utilization is None else int(utilization.gpu),
        processes=_processes(nvml, handle),
        parent_uuid=parent_uuid,
        minor=None if minor is None else int(minor),
    )


def _processes(nvml: Any, handle: Any) -> tuple[GpuProcess, ...]:
    """Compute and graphics processes, once each: a process doing both is listed in both,
    and its larger figure is the one to count."""
    used: dict[int, int | None] = {}
    compute = _listed(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle)
    graphics = _listed(nvml, nvml.nvmlDeviceGetGraphicsRunningProcesses, handle)
    for process in [*compute, *graphics]:
        pid, bytes_ = int(process.pid), process.usedGpuMemory
        used[pid] = _larger(used.get(pid), None if bytes_ is None else int(bytes_))
    return tuple(GpuProcess(pid=pid, used_bytes=b) for pid, b in sorted(used.items()))


def _larger(a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)


def _listed(nvml: Any, call: Callable[[Any], Any], handle: Any) -> list[Any]:
    """The processes of one kind; none where NVML can't list that kind for this GPU."""
    try:
        return list(call(handle))
    except nvml.NVMLError_NotSupported:
        return []


def _optional(nvml: Any, call: Callable[[Any], Any], handle: Any) -> Any:
    """A reading some GPUs don't offer (utilization on MIG devices, the minor number of a
    vGPU): None, and the GPU is listed without it."""
    try:
        return call(handle)
    except nvml.NVMLError as e:
        log.debug("NVML: %s: %s", getattr(call, "__name__", call), e)
        return None


def _text(value: str | bytes) -> str:
    # older pynvml releases return bytes, newer ones str
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# --- a supplied inventory -----------------------------------------------------------------


class _BadInventory(Exception):
    """What is wrong with an inventory file."""


class FileSource:
    """The GPUs described in a JSON file, re-read at every read so that operators and tests
    can change it while jobd runs (replace it atomically: write, then rename)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def source(self) -> str:
        return f"file:{self._path}"

    def read(self) -> GpuInventory:
        try:
            document = _load(self._path)
            gpus = _inventory_gpus(document)
            driver = _optional_str(document, "driverVersion", "the inventory")
        except _BadInventory as e:
            return GpuInventory(error=f"GPU inventory {self._path}: {e}", source=self.source)
        return GpuInventory(gpus=gpus, source=self.source, driver_version=driver)


def _load(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _BadInventory("no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _BadInventory(f"can't be read: {e}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise _BadInventory(f"not valid JSON: {e}") from None
    if not isinstance(document, dict):
        raise _BadInventory('expected a JSON object: {"driverVersion": ..., "gpus": [...]}')
    return document


def _inventory_gpus(document: Mapping[str, Any]) -> tuple[Gpu, ...]:
    entries = document.get("gpus")
    if not isinstance(entries, list):
        raise _BadInventory('"gpus" must be a list of GPUs')
    gpus = tuple(_file_gpu(entry, f"gpus[{n}]") for n, entry in enumerate(entries))
    _unique(gpus, "uuid", lambda g: g.uuid)
    _unique(gpus, "index", lambda g: g.index)
    return gpus


def _unique(gpus: tuple[Gpu, ...], what: str, key: Callable[[Gpu], str]) -> None:
    seen: set[str] = set()
    for gpu in gpus:
        if key(gpu) in seen:
            raise _BadInventory(f"two GPUs have {what} {key(gpu)!r}")
        seen.add(key(gpu))


def _file_gpu(entry: Any, where: str) -> Gpu:
    if not isinstance(entry, dict):
        raise _BadInventory(f"{where} is not an object")
    index = entry.get("index")
    if isinstance(index, bool) or not isinstance(index, int | str) or index == "":
        raise _BadInventory(f'{where}: index must be a number or a string, like 0 or "0:1"')
    total = _count(entry, "memoryTotalBytes", where)
    free = _count(entry, "memoryFreeBytes", where)
    if free > total:
        raise _BadInventory(f"{where}: memoryFreeBytes {free} exceeds memoryTotalBytes {total}")
    return Gpu(
        index=str(index),
        uuid=_required_str(entry, "uuid", where),
        name=_required_str(entry, "name", where),
        memory_total=total,
        memory_free=free,
        utilization=_utilization(entry, where),
        processes=_file_processes(entry.get("processes"), where),
        parent_uuid=_optional_str(entry, "migParentUuid", where),
        minor=_optional_count(entry, "minor", where),
    )


def _utilization(entry: Mapping[str, Any], where: str) -> int | None:
    percent = _optional_count(entry, "utilizationPercent", where)
    if percent is not None and percent > 100:
        raise _BadInventory(f"{where}: utilizationPercent {percent} is over 100")
    return percent


def _file_processes(entries: Any, where: str) -> tuple[GpuProcess, ...]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise _BadInventory(f"{where}: processes must be a list")
    processes = []
    for n, entry in enumerate(entries):
        at = f"{where}.processes[{n}]"
        if not isinstance(entry, dict):
            raise _BadInventory(f"{at} is not an object")
        used = _optional_count(entry, "usedMemoryBytes", at)
        processes.append(GpuProcess(pid=_count(entry, "pid", at), used_bytes=used))
    return tuple(processes)


def _required_str(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise _BadInventory(f"{where}: {key} must be a non-empty string")
    return value


def _optional_str(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise _BadInventory(f"{where}: {key} must be a string or null")
    return value


def _count(entry: Mapping[str, Any], key: str, where: str) -> int:
    if key not in entry:
        raise _BadInventory(f"{where}: missing {key}")
    value = _optional_count(entry, key, where)
    if value is None:
        raise _BadInventory(f"{where}: {key} can't be null")
    return value


def _optional_count(entry: Mapping[str, Any], key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    # JSON has one number type: 24e9 is a float that is a whole number of bytes
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadInventory(f"{where}: {key} must be a whole number, not negative (got {value!r})")
    return value


# --- which container a process is in ------------------------------------------------------


def container_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The id of the container process `pid` runs in, from its cgroup paths; None when the
    process is gone or is in no container. Podman's paths, by cgroup manager and version:
    `0::/user.slice/.../libpod-<id>.scope/container`, `12:memory:/machine.slice/libpod-<id>.scope`,
    `/libpod_parent/libpod-<id>`, or just `/<id>` with cgroupfs."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    # the innermost container, when containers nest
    found = _CONTAINER_ID.findall(text)
    return found[-1] if found else None
