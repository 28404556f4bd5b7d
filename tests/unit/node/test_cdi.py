"""CDI specs as podman reads them: which devices resolve, and why a spec would be skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobd.node.cdi import (
    CdiDevice,
    CdiRegistry,
    CdiSpec,
    DeviceNode,
    load_registry,
    max_cdi_version,
)

NVIDIA_YAML = """\
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
- name: GPU-0000
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
    - path: /dev/nvidia1
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  deviceNodes:
  - path: /dev/nvidiactl
  - path: /dev/nvidia-uvm
"""


def spec(kind: str, devices: dict[str, list[dict[str, str]]], version: str = "0.5.0") -> Any:
    return {
        "cdiVersion": version,
        "kind": kind,
        "devices": [
            {"name": name, "containerEdits": {"deviceNodes": nodes}}
            for name, nodes in devices.items()
        ],
    }


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_a_yaml_spec_from_nvidia_ctk(tmp_path: Path) -> None:
    path = write(tmp_path / "etc" / "nvidia.yaml", NVIDIA_YAML)
    registry = load_registry([tmp_path / "etc", tmp_path / "run"], "0.5.0")
    assert registry.problems == ()
    (found,) = registry.specs
    assert (found.path, found.version, found.kind) == (path, "0.5.0", "nvidia.com/gpu")
    assert found.common_nodes == (
        DeviceNode(path="/dev/nvidiactl", host_path="/dev/nvidiactl"),
        DeviceNode(path="/dev/nvidia-uvm", host_path="/dev/nvidia-uvm"),
    )
    assert registry.names() == {"nvidia.com/gpu=0", "nvidia.com/gpu=GPU-0000", "nvidia.com/gpu=all"}
    assert registry.device("nvidia.com/gpu=0") == CdiDevice(
        name="nvidia.com/gpu=0",
        nodes=(DeviceNode(path="/dev/nvidia0", host_path="/dev/nvidia0"),),  # no common nodes
    )
    all_nodes = registry.device("nvidia.com/gpu=all")
    assert all_nodes is not None and len(all_nodes.nodes) == 2
    assert registry.device("nvidia.com/gpu=7") is None


def test_a_json_spec_with_host_paths(tmp_path: Path) -> None:
    document = spec(
        "jobd.test/gpu",
        {"GPU-a": [{"path": "/dev/gpu-0", "hostPath": "/tmp/nodes/gpu0"}]},
        version="0.3.0",  # podman 4.3 takes hostPath in a 0.3.0 spec too
    )
    write(tmp_path / "run" / "fake.json", document)
    registry = load_registry([tmp_path / "etc", tmp_path / "run"], "0.5.0")
    assert registry.problems == ()
    device = registry.device("jobd.test/gpu=GPU-a")
    assert device is not None
    assert device.nodes == (DeviceNode(path="/dev/gpu-0", host_path="/tmp/nodes/gpu0"),)


def test_names_by_kind(tmp_path: Path) -> None:
    write(tmp_path / "a.json", spec("nvidia.com/gpu", {"0": [{"path": "/dev/nvidia0"}]}))
    write(tmp_path / "b.yaml", yaml.safe_dump(spec("vendor.com/fpga", {"x": []})))
    registry = load_registry([tmp_path], "0.5.0")
    assert registry.names("nvidia.com/gpu") == {"nvidia.com/gpu=0"}
    assert registry.names("vendor.com/fpga") == {"vendor.com/fpga=x"}
    assert registry.names("amd.com/gpu") == frozenset()
    assert registry.names() == {"nvidia.com/gpu=0", "vendor.com/fpga=x"}


def test_a_later_directory_wins(tmp_path: Path) -> None:
    write(
        tmp_path / "etc" / "nvidia.json",
        spec("nvidia.com/gpu", {"0": [{"path": "/dev/old0"}], "1": [{"path": "/dev/nvidia1"}]}),
    )
    write(tmp_path / "run" / "nvidia.json", spec("nvidia.com/gpu", {"0": [{"path": "/dev/new0"}]}))
    registry = load_registry([tmp_path / "etc", tmp_path / "run"], "0.5.0")
    assert registry.problems == ()
    zero, one = registry.device("nvidia.com/gpu=0"), registry.device("nvidia.com/gpu=1")
    assert zero is not None and zero.nodes[0].path == "/dev/new0"
    assert one is not None and one.nodes[0].path == "/dev/nvidia1"


def test_one_name_twice_in_one_directory_resolves_to_nothing(tmp_path: Path) -> None:
    write(tmp_path / "etc" / "a.json", spec("nvidia.com/gpu", {"0": [{"path": "/dev/etc0"}]}))
    for name in ("a.json", "b.json"):
        document = spec("nvidia.com/gpu", {"0": [{"path": "/dev/x"}], name[0]: []})
        write(tmp_path / "run" / name, document)
    registry = load_registry([tmp_path / "etc", tmp_path / "run"], "0.5.0")
    assert registry.device("nvidia.com/gpu=0") is None  # not even /etc's
    assert registry.names() == {"nvidia.com/gpu=a", "nvidia.com/gpu=b"}
    (problem,) = registry.problems
    assert str(tmp_path / "run" / "b.json") in problem
    assert "nvidia.com/gpu=0" in problem and "neither" in problem


def test_a_spec_too_new_for_this_podman_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "nvidia.yaml", NVIDIA_YAML.replace("0.5.0", "0.6.0"))
    registry = load_registry([tmp_path], max_cdi_version("4.3.1"))
    assert registry.specs == ()
    assert registry.device("nvidia.com/gpu=0") is None
    assert registry.problems == (
        f"{path}: cdiVersion 0.6.0 is newer than this podman reads (at most 0.5.0):"
        " podman ignores this spec silently",
    )
    assert load_registry([tmp_path], max_cdi_version("4.8.0")).problems == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("cdiVersion: [", "not valid YAML or JSON"),
        ("- just\n- a list\n", "not a CDI spec"),
        ("", "not a CDI spec"),
        ("kind: a.com/b\ndevices: []\n", "missing cdiVersion"),
        ("cdiVersion: 0.5\nkind: a.com/b\ndevices: []\n", "'0.5' is not a version"),
        ('cdiVersion: "0.4.1"\nkind: a.com/b\ndevices: []\n', "0.4.1 is not a released"),
        ('cdiVersion: "0.5.0"\ndevices: []\n', "missing kind"),
        ('cdiVersion: "0.5.0"\nkind: nvidia.com\ndevices: []\n', "does not read vendor/class"),
        ('cdiVersion: "0.5.0"\nkind: a.com/b/c\ndevices: []\n', "does not read vendor/class"),
        ('cdiVersion: "0.5.0"\nkind: /gpu\ndevices: []\n', "does not read vendor/class"),
        ('cdiVersion: "0.5.0"\nkind: a.com/b\n', "missing devices"),
        ('cdiVersion: "0.5.0"\nkind: a.com/b\ndevices: [7]\n', "devices[0] is not a mapping"),
        (
            'cdiVersion: "0.5.0"\nkind: a.com/b\ndevices:\n- name: 0\n  containerEdits: {}\n',
            "name must be a non-empty string",
        ),
        ('cdiVersion: "0.5.0"\nkind: a.com/b\ndevices:\n- name: x\n', "missing containerEdits"),
        (
            'cdiVersion: "0.5.0"\nkind: a.com/b\ndevices:\n- name: x\n  containerEdits:\n'
            "    deviceNodes:\n    - hostPath: /dev/x\n",
            "a device node needs a path",
        ),
        (
            'cdiVersion: "0.5.0"\nkind: a.com/b\ndevices:\n- name: x\n  containerEdits: {}\n'
            "- name: x\n  containerEdits: {}\n",
            "device a.com/b=x is defined twice",
        ),
        (
            'cdiVersion: "0.5.0"\nkind: a.com/b\ndevices: []\ncontainerEdits:\n'
            "  deviceNodes: /dev/x\n",
            "containerEdits.deviceNodes is not a list",
        ),
    ],
)
def test_a_malformed_spec_is_reported_and_skipped(tmp_path: Path, text: str, problem: str) -> None:
    write(tmp_path / "good.json", spec("nvidia.com/gpu", {"0": [{"path": "/dev/nvidia0"}]}))
    bad = write(tmp_path / "bad.yaml", text)
    registry = load_registry([tmp_path], "0.5.0")
    assert [s.path.name for s in registry.specs] == ["good.json"]
    (reported,) = registry.problems
    assert reported.startswith(f"{bad}: ")
    assert problem in reported
    assert reported.endswith("podman skips this spec")


def test_a_yml_file_is_one_podman_never_reads(tmp_path: Path) -> None:
    path = write(tmp_path / "nvidia.yml", NVIDIA_YAML)
    write(tmp_path / "notes.txt", "not a spec")
    (tmp_path / "old.json").mkdir()  # podman skips subdirectories
    registry = load_registry([tmp_path], "0.5.0")
    assert registry.specs == ()
    (problem,) = registry.problems
    assert problem.startswith(f"{path}: podman reads only .json and .yaml")


def test_files_are_read_in_name_order(tmp_path: Path) -> None:
    for name in ("c.json", "a.json", "b.yaml"):
        write(tmp_path / name, spec(f"v.com/{name[0]}", {"x": []}))
    registry = load_registry([tmp_path], "0.5.0")
    assert [s.path.name for s in registry.specs] == ["a.json", "b.yaml", "c.json"]


def test_missing_directories_are_fine(tmp_path: Path) -> None:
    assert load_registry([tmp_path / "nope", tmp_path / "nor"], "0.5.0") == CdiRegistry()
    assert load_registry([], "0.5.0") == CdiRegistry()


def test_a_registry_built_by_hand() -> None:
    device = CdiDevice(name="v.com/gpu=0", nodes=(DeviceNode(path="/dev/g0", host_path="/x"),))
    registry = CdiRegistry(
        specs=(
            CdiSpec(path=Path("/etc/cdi/v.json"), version="0.5.0", kind="v.com/gpu"),
            CdiSpec(
                path=Path("/var/run/cdi/v.json"),
                version="0.5.0",
                kind="v.com/gpu",
                devices={device.name: device},
            ),
        )
    )
    assert registry.device("v.com/gpu=0") == device
    assert registry.names("v.com/gpu") == {"v.com/gpu=0"}


@pytest.mark.parametrize(
    ("podman", "newest"),
    [
        ("4.3.1", "0.5.0"),  # verified here
        ("4.3.0", "0.5.0"),
        ("4.4.1", "0.5.0"),
        ("4.7.2", "0.5.0"),
        ("4.8.0", "0.6.0"),
        ("4.9.3", "0.6.0"),
        ("5.0.2", "0.6.0"),
        ("5.2.5", "0.6.0"),
        ("5.3.0", "0.8.0"),
        ("5.7.0", "0.8.0"),
        ("6.0.1", "0.8.0"),
        ("4.2.0", "0.4.0"),
        ("3.4.4", "0.3.0"),
        ("v4.9.4-dev", "0.6.0"),
        ("5.0.0-rc1", "0.6.0"),
        ("", "0.5.0"),
        ("unknown", "0.5.0"),
    ],
)
def test_the_newest_cdi_version_a_podman_reads(podman: str, newest: str) -> None:
    assert max_cdi_version(podman) == newest
