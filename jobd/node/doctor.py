"""jobd's checks of what it depends on, served at /v1/doctor for `jobctl doctor`: podman, its
limits, and the GPU path — NVML, the CDI specs the installed podman actually reads, a CDI
device for every GPU, and device nodes the daemon's user can open; and how it runs as a
service — subordinate ids for rootless podman, the socket's owner and mode, free disk for the
data and for podman's storage, the clock, the systemd unit, and what retention keeps. A check
that fails or warns says how to fix it."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobd.config import Config
from jobd.domain.engine import RuntimeInfo
from jobd.domain.identity import mode_summary
from jobd.domain.node import NodeInventory
from jobd.domain.resources import Allocation, GpuGrant
from jobd.node.cdi import CdiRegistry, load_registry, max_cdi_version
from jobd.node.disk import free_space
from jobd.node.firewall import HostGuard
from jobd.node.passthrough import passthrough

OK, WARN, FAIL = "ok", "warn", "fail"
SUBORDINATE_IDS = 65536  # what rootless podman maps an image's users into (uids 0-65535)
SOCKET_MODE = 0o660
CLOCK_SLACK_SECONDS = 5.0  # the wall clock may drift this far from the monotonic one
COMMAND_SECONDS = 3.0  # timedatectl and systemctl: an answer within this, or none
_STARTED = (time.time(), time.monotonic())  # both clocks as jobd started (this module loads)


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    name: str
    level: str  # ok, warn (works, with a caveat), fail (something users rely on is broken)
    message: str
    fix: str | None = None  # what to do about it, for a warning or a failure

    def to_api(self) -> dict[str, Any]:
        doc = {"name": self.name, "level": self.level, "message": self.message}
        return {**doc, "fix": self.fix} if self.fix else doc


async def checks(
    config: Config, info: RuntimeInfo, node: NodeInventory, host: HostGuard
) -> list[Check]:
    registry = await asyncio.to_thread(
        load_registry, config.gpus.cdi_spec_dirs, max_cdi_version(info.version)
    )
    found = [_podman(info), _init(info), _limits(info), _isolation(info), _host(host), _nvml(node)]
    if node.gpus.gpus or registry.names(config.gpus.cdi_kind):
        found += [
            _cdi_specs(config, info, registry, node),
            _cdi_devices(config, registry, node),
            await asyncio.to_thread(_device_nodes, config, registry),
        ]
    return found + await asyncio.to_thread(service_checks, config, info)


def _podman(info: RuntimeInfo) -> Check:
    return Check(
        name="podman",
        level=OK,
        message=f"podman {info.version} (API {info.api_version}), OCI runtime {info.oci_runtime},"
        f" cgroups {info.cgroup_version}, {'rootless' if info.rootless else 'rootful'}",
    )


def _isolation(info: RuntimeInfo) -> Check:
    return Check(
        name="isolation",
        level=OK,
        message=mode_summary(daemon_uid=os.getuid(), rootless=info.rootless),
    )


def _host(host: HostGuard) -> Check:
    if host.guarded:
        return Check(name="host access", level=OK, message=host.note)
    return Check(
        name="host access",
        level=WARN,
        message=host.note,
        fix="bind the host's services to 127.0.0.1, or run the system daemon (rootful podman),"
        " whose firewall rule refuses runs' connections to the host ([network] host_access)",
    )


def _init(info: RuntimeInfo) -> Check:
    if info.init_path:
        return Check(name="init", level=OK, message=f"containers run {info.init_path} as PID 1")
    return Check(
        name="init",
        level=FAIL,
        message="podman's init (catatonit) is missing, so no container can be created",
        fix="apt-get install catatonit",
    )


def _limits(info: RuntimeInfo) -> Check:
    if info.limits_enforced:
        return Check(name="limits", level=OK, message="memory, CPU and pids limits are enforced")
    return Check(
        name="limits",
        level=WARN,
        message=info.limits_note or "limits not enforced",
        fix="boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) and delegate cpu, memory"
        " and pids to users (Delegate= in user@.service), or run the system daemon",
    )


def _nvml(node: NodeInventory) -> Check:
    gpus = node.gpus
    if gpus.error:
        level = FAIL if gpus.source.startswith("file:") else WARN
        fix = (
            "correct the inventory file ([gpus] inventory_file)"
            if level == FAIL
            else "none needed without GPUs; with them, install the NVIDIA driver (libnvidia-ml)"
        )
        return Check(name="gpus", level=level, message=gpus.error, fix=fix)
    names = ", ".join(f"{g.index}: {g.name} ({g.uuid})" for g in gpus.gpus) or "none"
    driver = f", driver {gpus.driver_version}" if gpus.driver_version else ""
    return Check(
        name="gpus", level=OK, message=f"{len(gpus.gpus)} GPUs via {gpus.source}{driver}: {names}"
    )


def _cdi_specs(
    config: Config, info: RuntimeInfo, registry: CdiRegistry, node: NodeInventory
) -> Check:
    kind = config.gpus.cdi_kind
    where = ", ".join(str(d) for d in config.gpus.cdi_spec_dirs)
    if registry.problems:
        return Check(
            name="cdi-specs",
            level=FAIL,
            message="; ".join(registry.problems),
            fix="regenerate the spec: nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml",
        )
    if not registry.names(kind):
        return Check(
            name="cdi-specs",
            level=FAIL,
            message=f"no CDI spec for {kind} in {where}: GPUs can't reach containers",
            fix="generate one: nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml",
        )
    top = max_cdi_version(info.version)
    return Check(
        name="cdi-specs",
        level=OK,
        message=f"{len(registry.names(kind))} {kind} devices in specs podman {info.version}"
        f" reads (cdiVersion up to {top})",
    )


def _cdi_devices(config: Config, registry: CdiRegistry, node: NodeInventory) -> Check:
    missing = []
    for gpu in node.gpus.gpus:
        grant = GpuGrant(uuid=gpu.uuid, index=gpu.index, name=gpu.name)
        found = passthrough(Allocation(gpus=(grant,)), registry, config.gpus)
        if isinstance(found, str):
            missing.append(found)
    if missing:
        return Check(
            name="cdi-devices",
            level=FAIL,
            message="; ".join(missing),
            fix="regenerate the spec after a driver or GPU change: nvidia-ctk cdi generate"
            " --output=/etc/cdi/nvidia.yaml; or set [gpus] cdi_device_name",
        )
    return Check(name="cdi-devices", level=OK, message="every GPU has a CDI device")


def _device_nodes(config: Config, registry: CdiRegistry) -> Check:
    kind = config.gpus.cdi_kind
    paths = sorted(
        {
            node.host_path
            for name in registry.names(kind)
            if (device := registry.device(name)) is not None
            for node in device.nodes
        }
    )
    missing = [p for p in paths if not os.path.exists(p)]
    denied = [p for p in paths if p not in missing and not os.access(p, os.R_OK | os.W_OK)]
    problems = []
    if missing:
        problems.append(f"device nodes missing on the host: {', '.join(missing)}")
    if denied:
        problems.append(f"device nodes uid {os.getuid()} can't open: {', '.join(denied)}")
    if problems:
        return Check(
            name="device-nodes",
            level=FAIL,
            message="; ".join(problems),
            fix="load the driver (nvidia-smi creates the nodes) and let the daemon's user open"
            " them (the video group, or udev rules)",
        )
    return Check(
        name="device-nodes", level=OK, message=f"{len(paths)} device nodes present and accessible"
    )


# -- running as a service ---------------------------------------------------------------


def service_checks(config: Config, info: RuntimeInfo) -> list[Check]:
    """How jobd runs as a service on this host (blocks: call it in a thread)."""
    return [
        _subordinate_ids(info),
        _socket(config),
        _disk("data disk", config.data_dir, config),
        *([_disk("podman storage", Path(info.graph_root), config)] if info.graph_root else []),
        _clock(),
        _unit(config),
        _retention(config),
    ]


def _subordinate_ids(info: RuntimeInfo) -> Check:
    """Rootless podman maps an image's users into the daemon user's subordinate ids; the
    system daemon (rootful podman, mode owner) runs each user's runs as that user and needs
    none."""
    if not info.rootless:
        return Check(
            name="subuids",
            level=OK,
            message="not needed: rootful podman runs each user's runs as that user (mode owner)",
        )
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    fix = (
        f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"
        " (a range no other user has), then podman system migrate"
    )
    counts = {
        path: subordinate_count(Path(path), user, uid) for path in ("/etc/subuid", "/etc/subgid")
    }
    short = [f"{path} gives {user} {n}" for path, n in counts.items() if n < SUBORDINATE_IDS]
    if short:
        level = FAIL if min(counts.values()) == 0 else WARN
        return Check(
            name="subuids",
            level=level,
            message=f"rootless podman needs {SUBORDINATE_IDS} subordinate ids: {'; '.join(short)}",
            fix=fix,
        )
    return Check(
        name="subuids",
        level=OK,
        message=f"{user} has {counts['/etc/subuid']} subordinate uids and"
        f" {counts['/etc/subgid']} gids for rootless podman",
    )


def subordinate_count(path: Path, user: str, uid: int) -> int:
    """How many subordinate ids `path` gives the user (by name or uid), in all."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    total = 0
    for line in lines:
        owner, _, rest = line.strip().partition(":")
        _, _, count = rest.partition(":")
        if owner in (user, str(uid)) and count.isdigit():
            total += int(count)
    return total


def _socket(config: Config) -> Check:
    """The socket's owner, group and mode: 0660, and for the system daemon group jobd, whose
    members use jobctl."""
    path = config.socket
    try:
        found = path.stat()
    except OSError as e:
        return Check(name="socket", level=FAIL, message=f"{path}: {e.strerror}", fix="restart jobd")
    mode = stat.S_IMODE(found.st_mode)
    owner, group = _name(pwd.getpwuid, found.st_uid), _name(grp.getgrgid, found.st_gid)
    shown = f"{path}: {owner}:{group} {mode:04o}"
    problems, fixes = [], []
    if found.st_uid != os.getuid():
        problems.append(f"not owned by the daemon's user ({_name(pwd.getpwuid, os.getuid())})")
        fixes.append("remove the socket and restart jobd")
    if mode != SOCKET_MODE:
        problems.append(f"mode {mode:04o}, not {SOCKET_MODE:04o}")
        fixes.append(f"chmod {SOCKET_MODE:04o} {path}")
    if config.system:
        problems_, fixes_ = _socket_group(found.st_gid, path)
        problems, fixes = problems + problems_, fixes + fixes_
    if problems:
        level = WARN if problems == ["no group jobd"] else FAIL
        return Check(
            name="socket",
            level=level,
            message=f"{shown}: {'; '.join(problems)}",
            fix="; ".join(fixes),
        )
    return Check(name="socket", level=OK, message=shown)


def _socket_group(gid: int, path: Path) -> tuple[list[str], list[str]]:
    try:
        jobd_gid = grp.getgrnam("jobd").gr_gid
    except KeyError:
        return ["no group jobd"], [
            "groupadd --system jobd, add jobctl's users (usermod -aG jobd USER), restart jobd"
        ]
    if gid != jobd_gid:
        return ["its group is not jobd"], [f"chgrp jobd {path}"]
    return [], []


def _name(lookup: Any, key: int) -> str:
    try:
        return str(lookup(key)[0])
    except KeyError:
        return str(key)


def _disk(name: str, path: Path, config: Config) -> Check:
    """Room left where `path` is: below [outputs] disk_reserve_bytes runs writing outputs are
    stopped and writes start failing."""
    room = free_space(path)
    reserve = config.outputs.disk_reserve_bytes
    shown = f"{_gib(room.free)} free of {_gib(room.total)} on {path}"
    fix = (
        "free space there: jobctl prune, tighter [retention] keep_last and max_age"
        if name == "data disk"
        else "free space there: podman image prune, podman system prune"
    )
    if room.total == 0:
        return Check(name=name, level=WARN, message=f"{path}: its filesystem can't be read")
    if room.free < reserve:
        return Check(
            name=name,
            level=FAIL,
            message=f"{shown}: under the reserve ({_gib(reserve)}), runs writing outputs stop",
            fix=fix,
        )
    if room.free < 2 * reserve or room.free < room.total // 20:
        return Check(name=name, level=WARN, message=f"{shown}: running low", fix=fix)
    return Check(name=name, level=OK, message=shown)


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def _clock() -> Check:
    """Synchronized per timedatectl where it answers; at least not before this jobd was
    installed, and not gone back since jobd started (schedules and run times rely on it)."""
    wall, mono = _STARTED
    back = (time.monotonic() - mono) - (time.time() - wall)
    installed = Path(__file__).stat().st_mtime  # written as jobd was installed
    if time.time() < installed - 86400:
        return Check(
            name="clock",
            level=FAIL,
            message=f"the clock reads {time.ctime()}, before this jobd was installed",
            fix="set the time and keep it synchronized: timedatectl set-ntp true",
        )
    if back > CLOCK_SLACK_SECONDS:
        return Check(
            name="clock",
            level=WARN,
            message=f"the clock went back {back:.0f} s since jobd started: schedules and run"
            " times may be off",
            fix="keep it synchronized (timedatectl set-ntp true), not set by hand",
        )
    synced = _command(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if synced == "no":
        return Check(
            name="clock",
            level=WARN,
            message="the system clock is not synchronized (timedatectl: NTPSynchronized=no)",
            fix="timedatectl set-ntp true (systemd-timesyncd or chrony)",
        )
    how = "synchronized (timedatectl)" if synced == "yes" else "sane (timedatectl can't tell)"
    return Check(name="clock", level=OK, message=f"{how}, steady since jobd started")


def _command(argv: list[str]) -> str | None:
    """The command's output, stripped; None where it is missing, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def systemd_unit(cgroup: str, invocation: str | None) -> tuple[str, bool] | None:
    """The unit jobd runs as, from its cgroup (`/proc/self/cgroup`), and whether it is a
    user unit (under user@UID.service); None when not under systemd."""
    for line in cgroup.splitlines():
        path = line.rpartition(":")[2]
        parts = [p for p in path.split("/") if p]
        # user@UID.service holds a user's whole session: being below it is not being a unit
        services = [p for p in parts if p.endswith(".service") and not p.startswith("user@")]
        if services and (invocation or services[-1].startswith("jobd")):
            return services[-1], any(p.startswith("user@") for p in parts)
    return None


def _unit(config: Config) -> Check:
    """The unit's state under systemd: active, and how often it restarted."""
    try:
        cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        cgroup = ""
    found = systemd_unit(cgroup, os.environ.get("INVOCATION_ID"))
    if found is None:
        return Check(name="systemd", level=OK, message="not under systemd (started by hand)")
    unit, user = found
    shown = _command(
        [
            "systemctl",
            *(["--user"] if user else []),
            "show",
            unit,
            "-p",
            "ActiveState,SubState,NRestarts",
        ]
    )
    if shown is None:
        return Check(name="systemd", level=OK, message=f"{unit}, state unknown (no systemctl)")
    props = dict(line.partition("=")[::2] for line in shown.splitlines())
    state = f"{unit} {props.get('ActiveState')} ({props.get('SubState')})"
    restarts = int(props.get("NRestarts") or 0)
    if props.get("ActiveState") != "active" or restarts:
        journal = f"journalctl {'--user ' if user else ''}-u {unit}"
        return Check(
            name="systemd",
            level=WARN,
            message=f"{state}, restarted {restarts} times",
            fix=f"see why: {journal}",
        )
    return Check(name="systemd", level=OK, message=f"{state}, never restarted")


def _retention(config: Config) -> Check:
    """What is kept of finished runs, uploads and metrics."""
    retention = config.retention
    rest = (
        f"; unnamed uploads expire after {config.uploads.expire_days:g} days;"
        f" metric minutes are kept {config.metrics.keep_days:g} days"
    )
    if not retention.active:
        return Check(
            name="retention",
            level=WARN,
            message=retention.describe() + rest,
            fix='set [retention] keep_last (e.g. 100) or max_age (e.g. "90d") in jobd.toml',
        )
    return Check(name="retention", level=OK, message=retention.describe() + rest)
