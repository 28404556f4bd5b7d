"""Container Device Interface (CDI) specs, read the way the installed podman reads them, so that
jobd knows before creating a container whether `--device nvidia.com/gpu=0` will resolve, and
can say why not: podman skips a spec it can't use with nothing but a debug log line.

What podman does, through the CDI library it vendors (tags.cncf.io/container-device-interface,
`pkg/cdi/spec-dirs.go` and `cache.go`), and what is mirrored here:

- it reads the files ending in .json or .yaml in each spec directory, in name order; a .yml
  file is ignored (checked on podman 4.3.1);
- a spec whose cdiVersion the library does not know, older or newer, is rejected whole
  ("invalid version"), as is one it can't parse;
- a device defined in a later directory replaces one of the same name in an earlier one;
  two specs in the same directory defining one name is a conflict, and the name resolves to
  nothing at all (checked on podman 4.3.1).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CdiDevice",
    "CdiRegistry",
    "CdiSpec",
    "DeviceNode",
    "load_registry",
    "max_cdi_version",
]

SPEC_SUFFIXES = (".json", ".yaml")
# the spec versions the CDI library has released (specs-go/version.go); any other is invalid
RELEASED_VERSIONS = frozenset(
    ("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
)
FALLBACK_MAX_VERSION = "0.5.0"  # for a podman version this module can't place

# The newest cdiVersion each podman release reads, set by the CDI library release it vendors;
# the first row at or below a podman version applies. Each row is a lower bound: a release
# between two rows may read more than its row says (never less), so jobd errs towards
# reporting a spec as unreadable rather than trusting one podman will skip.
#   5.3: verified: podman's go.mod on main after 5.2 (buildah 1.37, common 0.60.1-dev, Aug
#        2024) requires tags.cncf.io/container-device-interface v0.8.0 (spec 0.8.0). 5.2 may
#        already have it: not verified. Later releases may vendor CDI 1.x (spec 1.0.0): not
#        verified; podman 5.7.0 reads 0.7.0 specs (NVIDIA/nvidia-container-toolkit#1940).
#   4.8: verified: containers/podman#20558 (merged 2023-11-06, before 4.8.0-rc1) vendored
#        CDI v0.6.2 (spec 0.6.0); podman 4.9.3 rejects 0.7.0 specs
#        (NVIDIA/nvidia-container-toolkit#1860). So 5.0 and 5.1 read at least 0.6.0; whether
#        they vendored CDI 0.7 (spec 0.7.0) is not verified. 4.6 and 4.7 may have vendored
#        CDI 0.6.0/0.6.1 (released May and September 2023): not verified.
#   4.3: verified on podman 4.3.1: 0.2.0-0.5.0 read, 0.6.0 and 0.4.1 rejected as invalid.
#   4.2: podman 4.2.0 vendored CDI v0.4.0, which rejects hostPath (spec 0.5.0) as an unknown
#        field (NVIDIA/nvidia-container-toolkit#38); that it reads 0.4.0 is inferred.
#   older: inferred; podman before 4.1 has no CDI at all.
_PODMAN_MAX_VERSION: tuple[tuple[tuple[int, int], str], ...] = (
    ((5, 3), "0.8.0"),
    ((4, 8), "0.6.0"),
    ((4, 3), "0.5.0"),
    ((4, 2), "0.4.0"),
    ((0, 0), "0.3.0"),
)
_PODMAN_RELEASE = re.compile(r"\s*v?(\d+)\.(\d+)")
_SPEC_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceNode:
    path: str  # in the container
    host_path: str  # on the host; CDI's default is `path`


@dataclass(frozen=True, slots=True, kw_only=True)
class CdiDevice:
    name: str  # qualified: "nvidia.com/gpu=0"
    # its own nodes only: the spec's common nodes (nvidiactl, nvidia-uvm) are shared by all
    nodes: tuple[DeviceNode, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CdiSpec:
    path: Path
    version: str
    kind: str  # "vendor/class": "nvidia.com/gpu"
    devices: Mapping[str, CdiDevice] = field(default_factory=dict)  # by qualified name
    common_nodes: tuple[DeviceNode, ...] = ()  # given with any of its devices


@dataclass(frozen=True, slots=True, kw_only=True)
class CdiRegistry:
    """The specs podman would use, in the order it reads them, and what is wrong with the
    others (each naming its file)."""

    specs: tuple[CdiSpec, ...] = ()
    problems: tuple[str, ...] = ()

    def device(self, qualified_name: str) -> CdiDevice | None:
        for spec in reversed(self.specs):  # a later directory's device wins
            device = spec.devices.get(qualified_name)
            if device is not None:
                return device
        return None

    def names(self, kind: str | None = None) -> frozenset[str]:
        return frozenset(
            name for spec in self.specs if kind in (None, spec.kind) for name in spec.devices
        )


class _Invalid(Exception):
    """Why podman rejects a spec."""


class _TooNew(_Invalid):
    """A spec for a newer podman: the one case where podman says nothing at all."""


def max_cdi_version(podman_version: str) -> str:
    """The newest cdiVersion the podman of `podman_version` ("4.3.1") reads."""
    found = _PODMAN_RELEASE.match(podman_version)
    if found is None:
        return FALLBACK_MAX_VERSION
    release = (int(found[1]), int(found[2]))
    return next(top for first, top in _PODMAN_MAX_VERSION if release >= first)


def load_registry(dirs: Sequence[Path], max_version: str) -> CdiRegistry:
    """Every spec in `dirs` (earliest first; a missing directory has none) that a podman
    reading cdiVersions up to `max_version` would use, and why it would skip the others."""
    read: list[tuple[int, CdiSpec]] = []
    problems: list[str] = []
    for priority, directory in enumerate(dirs):
        for path in _spec_files(directory, problems):
            try:
                read.append((priority, _read_spec(path, max_version)))
            except _Invalid as e:
                problems.append(f"{path}: {e}")
    specs, conflicts = _without_conflicts(read)
    return CdiRegistry(specs=specs, problems=(*problems, *conflicts))


def _spec_files(directory: Path, problems: list[str]) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    except OSError as e:
        problems.append(f"{directory}: can't list the CDI specs there: {e.strerror or e}")
        return []
    for path in entries:
        if path.suffix == ".yml":
            problems.append(
                f"{path}: podman reads only .json and .yaml CDI specs and ignores this file;"
                " rename it to .yaml"
            )
    # podman skips subdirectories, and tries any other entry (a dangling link: an error)
    return [p for p in entries if p.suffix in SPEC_SUFFIXES and not _is_real_dir(p)]


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _read_spec(path: Path, max_version: str) -> CdiSpec:
    raw = _load_spec(path)
    try:
        version = _version(raw, max_version)
        kind = _kind(raw)
        devices = _devices(raw, kind)
        common = _nodes(raw.get("containerEdits"), "containerEdits")
    except _TooNew:
        raise
    except _Invalid as e:
        raise _Invalid(f"{e}: podman skips this spec") from None
    return CdiSpec(path=path, version=version, kind=kind, devices=devices, common_nodes=common)


def _load_spec(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_bytes())  # JSON is YAML
    except OSError as e:
        raise _Invalid(f"can't be read ({e.strerror or e}): podman skips this spec") from None
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0]
        raise _Invalid(f"not valid YAML or JSON ({first}): podman skips this spec") from None
    if not isinstance(raw, dict):
        raise _Invalid(
            "not a CDI spec (a mapping with cdiVersion, kind and devices): podman skips this spec"
        )
    return raw


def _version(raw: Mapping[str, Any], max_version: str) -> str:
    if raw.get("cdiVersion") is None:
        raise _Invalid("missing cdiVersion")
    version = str(raw["cdiVersion"]).removeprefix("v")
    parsed = _version_tuple(version)
    if parsed is None:
        raise _Invalid(f'cdiVersion {version!r} is not a version (quote it: "0.5.0")')
    top = _version_tuple(max_version)
    if top is not None and parsed > top:
        raise _TooNew(
            f"cdiVersion {version} is newer than this podman reads (at most {max_version}):"
            " podman ignores this spec silently"
        )
    if version not in RELEASED_VERSIONS:
        raise _Invalid(f"cdiVersion {version} is not a released CDI spec version")
    return version


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    found = _SPEC_VERSION.fullmatch(version)
    if found is None:
        return None
    return int(found[1]), int(found[2]), int(found[3])


def _kind(raw: Mapping[str, Any]) -> str:
    kind = raw.get("kind")
    if kind is None:
        raise _Invalid("missing kind")
    vendor, slash, device_class = str(kind).partition("/")
    if not (vendor and slash and device_class) or "/" in device_class:
        raise _Invalid(f"kind {kind!r} does not read vendor/class, like nvidia.com/gpu")
    return str(kind)


def _devices(raw: Mapping[str, Any], kind: str) -> dict[str, CdiDevice]:
    entries = raw.get("devices")
    if not isinstance(entries, list):
        raise _Invalid("missing devices (a list)")
    devices: dict[str, CdiDevice] = {}
    for n, entry in enumerate(entries):
        device = _device(entry, kind, f"devices[{n}]")
        if device.name in devices:
            raise _Invalid(f"device {device.name} is defined twice")
        devices[device.name] = device
    return devices


def _device(entry: Any, kind: str, where: str) -> CdiDevice:
    if not isinstance(entry, dict):
        raise _Invalid(f"{where} is not a mapping")
    name = entry.get("name")
    # unquoted in YAML, `name: 0` is a number, which podman's parser refuses
    if not isinstance(name, str) or not name:
        raise _Invalid(f'{where}: name must be a non-empty string (quote it: name: "0")')
    edits = entry.get("containerEdits")
    if not isinstance(edits, dict):
        raise _Invalid(f"{where} ({name}): missing containerEdits")
    return CdiDevice(name=f"{kind}={name}", nodes=_nodes(edits, f"{where}.containerEdits"))


def _nodes(edits: Any, where: str) -> tuple[DeviceNode, ...]:
    if edits is None:
        return ()
    if not isinstance(edits, dict):
        raise _Invalid(f"{where} is not a mapping")
    entries = edits.get("deviceNodes") or []
    if not isinstance(entries, list):
        raise _Invalid(f"{where}.deviceNodes is not a list")
    return tuple(_node(entry, f"{where}.deviceNodes[{n}]") for n, entry in enumerate(entries))


def _node(entry: Any, where: str) -> DeviceNode:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise _Invalid(f"{where}: a device node needs a path")
    host_path = entry.get("hostPath") or entry["path"]
    if not isinstance(host_path, str):
        raise _Invalid(f"{where}: hostPath must be a string")
    return DeviceNode(path=entry["path"], host_path=host_path)


def _without_conflicts(
    read: Iterable[tuple[int, CdiSpec]],
) -> tuple[tuple[CdiSpec, ...], list[str]]:
    """The specs less the device names two specs of one directory both define: podman
    resolves such a name to nothing, whichever directory defines it."""
    first: dict[tuple[int, str], Path] = {}
    conflicted: set[str] = set()
    problems = []
    specs = []
    for priority, spec in read:
        specs.append(spec)
        for name in spec.devices:
            other = first.setdefault((priority, name), spec.path)
            if other != spec.path:
                conflicted.add(name)
                problems.append(
                    f"{spec.path}: device {name} is also defined in {other}, in the same"
                    " directory: podman resolves it to neither"
                )
    if conflicted:
        specs = [_less(spec, conflicted) for spec in specs]
    return tuple(specs), problems


def _less(spec: CdiSpec, names: set[str]) -> CdiSpec:
    devices = {name: d for name, d in spec.devices.items() if name not in names}
    return dataclasses.replace(spec, devices=devices)
