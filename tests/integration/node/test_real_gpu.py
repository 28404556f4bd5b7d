"""On a machine with an NVIDIA GPU (skipped elsewhere): NVML is read for real, in the shapes
the fakes of tests/unit/test_gpus.py stand in for."""

from __future__ import annotations

import pytest

from jobd.node.gpus import NvmlSource

pytestmark = pytest.mark.gpu


def test_nvml_lists_the_real_gpus_with_their_memory_and_processes() -> None:
    inventory = NvmlSource().read()
    assert inventory.error is None and inventory.source == "nvml"
    assert inventory.driver_version
    for gpu in inventory.gpus:
        assert gpu.uuid.startswith(("GPU-", "MIG-"))
        assert gpu.name and 0 <= gpu.memory_free <= gpu.memory_total
        assert all(p.pid > 0 for p in gpu.processes)
    indexes = [g.index for g in inventory.gpus]
    assert len(set(indexes)) == len(indexes)


def test_reading_twice_reuses_the_initialised_library() -> None:
    source = NvmlSource()
    first, second = source.read(), source.read()
    assert [g.uuid for g in first.gpus] == [g.uuid for g in second.gpus]
