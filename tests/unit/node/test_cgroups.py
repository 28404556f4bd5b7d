"""A container's counters read from its cgroup files, v1 and v2 (the files as the kernel
writes them, in a directory of the test's)."""

from __future__ import annotations

import os
from pathlib import Path

from jobd.node.cgroups import ContainerCgroup, Reading


def test_v1_counters_are_cpuacct_and_memory_less_inactive_file(tmp_path: Path) -> None:
    memory = tmp_path / "memory"
    memory.mkdir()
    (tmp_path / "cpuacct.usage").write_text("2500000000\n")
    (memory / "memory.usage_in_bytes").write_text("104857600\n")
    (memory / "memory.stat").write_text(
        "cache 8388608\ninactive_file 1\ntotal_cache 8388608\ntotal_inactive_file 4194304\n"
    )
    cgroup = ContainerCgroup(cpu=tmp_path / "cpuacct.usage", memory=memory, v2=False)
    assert cgroup.read() == Reading(cpu_ns=2_500_000_000, memory_bytes=104857600 - 4194304)


def test_v2_counters_are_cpu_stat_and_memory_current_less_inactive_file(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (tmp_path / "memory.current").write_text("52428800\n")
    (tmp_path / "memory.stat").write_text("anon 40000000\ninactive_file 2097152\n")
    cgroup = ContainerCgroup(cpu=tmp_path / "cpu.stat", memory=tmp_path, v2=True)
    assert cgroup.read() == Reading(cpu_ns=1_500_000_000, memory_bytes=52428800 - 2097152)


def test_a_gone_cgroup_reads_as_nothing(tmp_path: Path) -> None:
    cgroup = ContainerCgroup(cpu=tmp_path / "gone" / "cpu.stat", memory=tmp_path / "gone", v2=True)
    assert cgroup.read() is None


def test_a_process_in_jobds_own_cgroups_or_gone_has_none_of_its_own() -> None:
    assert ContainerCgroup.of(os.getpid()) is None, "rootless podman on v1 makes no cgroup"
    assert ContainerCgroup.of(2**22 + 7) is None
