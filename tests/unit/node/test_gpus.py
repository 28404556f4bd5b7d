"""Reading the GPUs: NVML through a fake with NVML's shapes and pynvml's own exception classes,
a supplied inventory file, and which container a GPU process belongs to."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from jobd.domain.node import Gpu, GpuProcess
from jobd.node.gpus import NVML_MISSING, FileSource, NvmlSource, container_of, gpu_source

GB = 1000**3
CONTAINER = "3f" * 32
OTHER = "ab" * 32


def proc(pid: int, used: int | None) -> SimpleNamespace:
    """A process as pynvml returns it (a struct with usedGpuMemory None when unknown)."""
    return SimpleNamespace(pid=pid, usedGpuMemory=used)


@dataclass
class FakeDevice:
    uuid: str
    name: bytes | str
    total: int = 24 * GB
    free: int = 24 * GB
    utilization: int | None = 0  # None: not supported
    compute: list[SimpleNamespace] = field(default_factory=list)
    graphics: list[SimpleNamespace] = field(default_factory=list)
    minor: int | None = None  # None: not supported
    mig: list[FakeDevice | None] | None = None  # None: no MIG; else slots, None when empty
    broken: bool = False  # its reads fail as a lost GPU's do


class FakeNvml:
    """What jobd calls of pynvml, over a list of devices."""

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_NotFound = pynvml.NVMLError_NotFound
    NVMLError_InvalidArgument = pynvml.NVMLError_InvalidArgument
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE

    def __init__(self, devices: list[FakeDevice], *, init_errors: list[int] | None = None):
        self.devices = devices
        self.init_errors = list(init_errors or [])
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.init_errors:
            raise pynvml.NVMLError(self.init_errors.pop(0))

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        return self.devices[index]

    def nvmlDeviceGetUUID(self, handle: FakeDevice) -> str:
        if handle.broken:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return handle.uuid

    def nvmlDeviceGetName(self, handle: FakeDevice) -> bytes | str:
        return handle.name

    def nvmlDeviceGetMemoryInfo(self, handle: FakeDevice) -> SimpleNamespace:
        return SimpleNamespace(
            total=handle.total, free=handle.free, used=handle.total - handle.free
        )

    def nvmlDeviceGetUtilizationRates(self, handle: FakeDevice) -> SimpleNamespace:
        if handle.utilization is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(gpu=handle.utilization, memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeDevice) -> list[SimpleNamespace]:
        return handle.compute

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeDevice) -> list[SimpleNamespace]:
        return handle.graphics

    def nvmlDeviceGetMinorNumber(self, handle: FakeDevice) -> int:
        if handle.minor is None:
            raise pynvml.NVMLError_NotSupported()
        return handle.minor

    def nvmlDeviceGetMigMode(self, handle: FakeDevice) -> tuple[int, int]:
        if handle.mig is None:
            raise pynvml.NVMLError_NotSupported()
        return pynvml.NVML_DEVICE_MIG_ENABLE, pynvml.NVML_DEVICE_MIG_ENABLE

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeDevice) -> int:
        return len(handle.mig or [])

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeDevice, slot: int) -> FakeDevice:
        found = (handle.mig or [])[slot]
        if found is None:
            raise pynvml.NVMLError_NotFound()
        return found


class MissingLibrary(FakeNvml):
    def nvmlInit(self) -> None:
        raise pynvml.NVMLError_LibraryNotFound()


def two_gpus() -> list[FakeDevice]:
    return [
        FakeDevice(
            uuid="GPU-0000",
            name=b"NVIDIA L4",
            free=20 * GB,
            utilization=37,
            compute=[proc(100, 3 * GB), proc(200, None)],
            graphics=[proc(100, 1 * GB)],  # the same process, also drawing
            minor=0,
        ),
        FakeDevice(
            uuid="GPU-0001",
            name="NVIDIA L4",
            graphics=[proc(300, None)],
            compute=[proc(300, 2 * GB)],
            minor=1,
        ),
    ]


def test_whole_gpus_with_their_processes() -> None:
    inventory = NvmlSource(FakeNvml(two_gpus())).read()
    assert inventory.error is None
    assert inventory.source == "nvml"
    assert inventory.driver_version == "550.54.15"
    first, second = inventory.gpus
    assert first == Gpu(
        index="0",
        uuid="GPU-0000",
        name="NVIDIA L4",
        memory_total=24 * GB,
        memory_free=20 * GB,
        utilization=37,
        processes=(GpuProcess(pid=100, used_bytes=3 * GB), GpuProcess(pid=200, used_bytes=None)),
        minor=0,
    )
    assert second.index == "1" and second.name == "NVIDIA L4" and second.minor == 1
    assert second.processes == (GpuProcess(pid=300, used_bytes=2 * GB),)


def test_a_mig_gpu_lists_its_mig_devices_not_itself() -> None:
    migs: list[FakeDevice | None] = [
        FakeDevice(uuid="MIG-a", name=b"NVIDIA A100 MIG 1g.5gb", total=5 * GB, utilization=None),
        None,  # an empty slot
        FakeDevice(
            uuid="MIG-b",
            name="NVIDIA A100 MIG 2g.10gb",
            total=10 * GB,
            free=6 * GB,
            utilization=None,
            compute=[proc(400, 4 * GB)],
        ),
    ]
    devices = [
        FakeDevice(uuid="GPU-0000", name="NVIDIA L4", minor=0),
        FakeDevice(uuid="GPU-A100", name="NVIDIA A100", total=40 * GB, minor=1, mig=migs),
    ]
    gpus = NvmlSource(FakeNvml(devices)).read().gpus
    assert [(g.index, g.uuid, g.parent_uuid) for g in gpus] == [
        ("0", "GPU-0000", None),
        # named by slot, as nvidia-ctk names them in the CDI spec: slot 1 is empty
        ("1:0", "MIG-a", "GPU-A100"),
        ("1:2", "MIG-b", "GPU-A100"),
    ]
    mig_b = gpus[2]
    assert mig_b.name == "NVIDIA A100 MIG 2g.10gb"
    assert (mig_b.memory_total, mig_b.memory_free) == (10 * GB, 6 * GB)
    assert mig_b.utilization is None and mig_b.minor is None
    assert mig_b.processes == (GpuProcess(pid=400, used_bytes=4 * GB),)


def test_utilization_and_minor_not_supported_are_unknown() -> None:
    device = FakeDevice(uuid="GPU-0000", name="NVIDIA L4", utilization=None, minor=None)
    (gpu,) = NvmlSource(FakeNvml([device])).read().gpus
    assert gpu.utilization is None and gpu.minor is None


def test_a_gpu_that_fails_to_read_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    devices = two_gpus()
    devices[0].broken = True
    with caplog.at_level(logging.WARNING, logger="jobd.gpus"):
        inventory = NvmlSource(FakeNvml(devices)).read()
    assert inventory.error is None
    assert [g.uuid for g in inventory.gpus] == ["GPU-0001"]
    assert "GPU 0" in caplog.text and "GPU is lost" in caplog.text


def test_no_library_means_no_gpus_and_says_why() -> None:
    inventory = NvmlSource(MissingLibrary([])).read()
    assert inventory.gpus == ()
    assert inventory.error == NVML_MISSING
    assert inventory.source == "nvml"


def test_no_pynvml_module_is_the_same_as_no_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert NvmlSource().read().error == NVML_MISSING


def test_init_is_tried_again_until_it_works_then_never_again() -> None:
    nvml = FakeNvml(two_gpus(), init_errors=[pynvml.NVML_ERROR_DRIVER_NOT_LOADED])
    source = NvmlSource(nvml)
    failed = source.read()
    assert failed.gpus == ()
    assert failed.error is not None and "Driver Not Loaded" in failed.error
    assert len(source.read().gpus) == 2
    assert len(source.read().gpus) == 2
    assert nvml.inits == 2


@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="an NVIDIA driver is here")
def test_the_real_pynvml_without_a_driver() -> None:
    inventory = NvmlSource().read()
    assert (inventory.gpus, inventory.error) == ((), NVML_MISSING)


# --- a supplied inventory ---


def write(path: Path, document: Any) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def gpu_entry(index: int | str, **more: Any) -> dict[str, Any]:
    return {
        "index": index,
        "uuid": f"GPU-{index}",
        "name": "NVIDIA L4",
        "memoryTotalBytes": 24 * GB,
        "memoryFreeBytes": 24 * GB,
        **more,
    }


def test_an_inventory_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "gpus.json",
        {
            "driverVersion": "550.54",
            "gpus": [
                gpu_entry(0, utilizationPercent=12, minor=0, processes=[{"pid": 7}]),
                gpu_entry(
                    "1:0",
                    memoryTotalBytes=10e9,  # a float that is a whole number of bytes
                    memoryFreeBytes=4 * GB,
                    processes=[{"pid": 8, "usedMemoryBytes": 6 * GB}],
                    migParentUuid="GPU-1",
                    utilizationPercent=None,
                ),
            ],
        },
    )
    source = gpu_source(path)
    assert isinstance(source, FileSource)
    inventory = source.read()
    assert inventory.error is None
    assert inventory.source == f"file:{path}"
    assert inventory.driver_version == "550.54"
    first, mig = inventory.gpus
    assert first == Gpu(
        index="0",
        uuid="GPU-0",
        name="NVIDIA L4",
        memory_total=24 * GB,
        memory_free=24 * GB,
        utilization=12,
        processes=(GpuProcess(pid=7, used_bytes=None),),
        minor=0,
    )
    assert (mig.index, mig.parent_uuid, mig.memory_total, mig.memory_used) == (
        "1:0",
        "GPU-1",
        10 * GB,
        6 * GB,
    )


def test_the_file_is_read_again_at_every_read(tmp_path: Path) -> None:
    path = write(tmp_path / "gpus.json", {"gpus": [gpu_entry(0)]})
    source = FileSource(path)
    assert source.read().gpus[0].processes == ()
    write(path, {"gpus": [gpu_entry(0, processes=[{"pid": 9, "usedMemoryBytes": GB}])]})
    assert source.read().gpus[0].processes == (GpuProcess(pid=9, used_bytes=GB),)
    path.unlink()
    assert "no such file" in (source.read().error or "")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{not json", "not valid JSON"),
        ([], "expected a JSON object"),
        ({"driverVersion": "550"}, '"gpus" must be a list'),
        ({"gpus": [7]}, "gpus[0] is not an object"),
        ({"gpus": [{k: v for k, v in gpu_entry(0).items() if k != "uuid"}]}, "uuid"),
        ({"gpus": [{k: v for k, v in gpu_entry(0).items() if k != "index"}]}, "index"),
        (
            {"gpus": [{k: v for k, v in gpu_entry(0).items() if k != "memoryTotalBytes"}]},
            "missing memoryTotalBytes",
        ),
        ({"gpus": [gpu_entry(0), gpu_entry(1, uuid="GPU-0")]}, "two GPUs have uuid 'GPU-0'"),
        ({"gpus": [gpu_entry(0), gpu_entry("0", uuid="GPU-x")]}, "two GPUs have index '0'"),
        ({"gpus": [gpu_entry(0, memoryFreeBytes=-1)]}, "memoryFreeBytes must be a whole number"),
        ({"gpus": [gpu_entry(0, memoryFreeBytes=25 * GB)]}, "exceeds memoryTotalBytes"),
        ({"gpus": [gpu_entry(0, memoryTotalBytes="24GB")]}, "memoryTotalBytes must be"),
        ({"gpus": [gpu_entry(0, utilizationPercent=150)]}, "over 100"),
        ({"gpus": [gpu_entry(0, processes=[{"usedMemoryBytes": 1}])]}, "missing pid"),
        ({"gpus": [gpu_entry(0, processes={"pid": 1})]}, "processes must be a list"),
        ({"gpus": [gpu_entry(0, migParentUuid=3)]}, "migParentUuid must be a string"),
        ({"gpus": [gpu_entry(True)]}, "index must be"),
    ],
)
def test_a_bad_inventory_file_is_an_error_naming_it(
    tmp_path: Path, document: Any, problem: str
) -> None:
    path = write(tmp_path / "gpus.json", document)
    inventory = FileSource(path).read()
    assert inventory.gpus == ()
    assert inventory.source == f"file:{path}"
    assert inventory.error is not None
    assert str(path) in inventory.error
    assert problem in inventory.error


def test_no_inventory_file_means_nvml() -> None:
    assert isinstance(gpu_source(None), NvmlSource)


# --- which container a GPU process is in ---


def cgroup(proc: Path, pid: int, text: str) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(text)


@pytest.mark.parametrize(
    "text",
    [
        # cgroups v2, rootless, systemd: the container's processes sit in a child group
        f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CONTAINER}.scope"
        "/container\n",
        # cgroups v1, rootful, systemd
        f"12:memory:/machine.slice/libpod-{CONTAINER}.scope\n"
        f"11:pids:/machine.slice/libpod-{CONTAINER}.scope\n1:name=systemd:/\n",
        # cgroupfs manager
        f"0::/libpod_parent/libpod-{CONTAINER}\n",
        f"0::/{CONTAINER}\n",
        # nested: the innermost container
        f"0::/libpod_parent/libpod-{OTHER}/{CONTAINER}\n",
    ],
)
def test_the_container_of_a_process(tmp_path: Path, text: str) -> None:
    cgroup(tmp_path, 42, text)
    assert container_of(42, tmp_path) == CONTAINER


@pytest.mark.parametrize(
    "text",
    [
        "0::/user.slice/user-1000.slice/session-3.scope\n",
        f"0::/system.slice/{CONTAINER}0.scope\n",  # 65 hex digits: not an id
        "",
    ],
)
def test_a_process_in_no_container(tmp_path: Path, text: str) -> None:
    cgroup(tmp_path, 42, text)
    assert container_of(42, tmp_path) is None


def test_a_process_that_is_gone(tmp_path: Path) -> None:
    assert container_of(42, tmp_path) is None
