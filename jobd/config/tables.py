"""The configuration's tables as settings: [logs], [gpus], [volumes], [network], [outputs],
[uploads], [metrics], [log_stream], [ssh], each a frozen record with its defaults, and the
readers that check a table into one. jobd/config/__init__.py reads the file and builds the Config
that holds them."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jobd.domain.resources import GIB, MIB
from jobd.domain.ssh import SshEndpoint

# where podman reads CDI specs: 4.3 only these; later versions too unless containers.conf says
# otherwise
DEFAULT_SPEC_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLimits:
    max_bytes: int = 100 * MIB  # kept per run: the head, a marker, then the newest output
    head_bytes: int = 10 * MIB
    segment_bytes: int = 8 * MIB  # the tail is trimmed, oldest first, this much at a time
    # look for `::jobd progress` lines in what runs print (reads every byte of output once)
    progress_markers: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuSettings:
    inventory_file: Path | None = None  # None: NVML
    cdi_kind: str = "nvidia.com/gpu"
    cdi_device_name: str = "auto"  # auto, uuid, index
    cdi_spec_dirs: tuple[Path, ...] = DEFAULT_SPEC_DIRS
    performance: Mapping[str, float] = field(default_factory=dict)  # GPU model -> factor

    def factor(self, model: str) -> float:
        return float(self.performance.get(model, 1.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeSettings:
    # a job may bind-mount these host paths and what is below them (symlinks resolved first)
    allowed_host_paths: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSettings:
    # whether jobs on podman's default network may open connections to the host itself
    # (services bound to 0.0.0.0, reached through the bridge's gateway); the system daemon
    # refuses them with a firewall rule unless this is true
    host_access: bool = False
    host_ports: tuple[int, ...] = ()  # host TCP ports jobs may reach all the same


@dataclass(frozen=True, slots=True, kw_only=True)
class SshSettings:
    """The SSH gateway into jobs (jobd/ssh/): on `address`:`port` unless `enabled` is false
    or the port is 0. `host` is what a run's `ssh` field tells clients to connect to."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 0  # as configured; ssh_settings puts the uid's default in when none is
    host: str | None = None  # None: the address, or this machine's name for a wildcard one

    @property
    def on(self) -> bool:
        return self.enabled and self.port != 0

    @property
    def endpoint(self) -> SshEndpoint | None:
        """Where clients reach the gateway (a run's `ssh` field); None when it is off."""
        return SshEndpoint(host=self.advertised_host, port=self.port) if self.on else None

    @property
    def advertised_host(self) -> str:
        if self.host:
            return self.host
        if self.address in {"0.0.0.0", "::", ""}:
            return socket.getfqdn()
        return self.address


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSettings:
    limit_bytes: int = 10 * GIB  # the most a run's /outputs may hold, unless its job says
    sample_seconds: float = 1.0  # how often running runs' outputs are measured
    # stop runs writing outputs when the disk they are on has less than this free
    disk_reserve_bytes: int = GIB


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadSettings:
    max_bytes: int = 20 * GIB  # the largest file one upload may be
    # an upload no job names is deleted this long after it was uploaded or last named
    expire_days: float = 7.0

    @property
    def expire_seconds(self) -> float:
        return self.expire_days * 86400


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSettings:
    sample_seconds: float = 5.0  # how often running runs' CPU, memory and GPUs are sampled
    full_hours: float = 24.0  # samples are kept as taken this long, then as minutes
    keep_days: float = 30.0  # minutes (averages and maxima) are kept this long


@dataclass(frozen=True, slots=True, kw_only=True)
class LogStreamSettings:
    """[log_stream]: every run's output lines forwarded as they are written. target "" (off),
    "journald" or "syslog"; address: syslog's (`unix:/dev/log`, `udp://127.0.0.1:514`,
    `tcp://127.0.0.1:601`; loopback only), or journald's socket (its default when empty)."""

    target: str = ""
    address: str = ""
    queue_lines: int = 10_000  # lines waiting to be sent; past it they are dropped, counted
    app_name: str = "jobd"

    def check(self) -> str | None:
        """What is wrong with these settings, or None."""
        if self.target not in ("", "journald", "syslog"):
            return f"log_stream.target must be journald or syslog, not {self.target!r}"
        if self.queue_lines < 1:
            return "log_stream.queue_lines must be positive"
        if self.target == "syslog":
            try:
                endpoint(self.address)
            except ValueError as e:
                return f"log_stream.address: {e}"
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    kind: str  # unix, udp, tcp
    path: str = ""
    host: str = ""
    port: int = 0


def endpoint(address: str) -> Endpoint:
    """A syslog address parsed; ValueError says what is wrong."""
    if address.startswith("unix:"):
        path = address.removeprefix("unix:").removeprefix("//")
        if not path.startswith("/"):
            raise ValueError(f"{address!r}: unix: needs an absolute path")
        return Endpoint(kind="unix", path=path)
    parts = urlsplit(address)
    if parts.scheme not in ("udp", "tcp") or not parts.hostname or not parts.port:
        raise ValueError(f"{address!r}: use unix:/PATH, udp://HOST:PORT or tcp://HOST:PORT")
    if parts.hostname not in LOOPBACK:
        raise ValueError(f"{address!r}: only loopback addresses (logs stay on this machine)")
    return Endpoint(kind=parts.scheme, host=parts.hostname, port=parts.port)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in {"0", "false", "no", "off", ""}


def volume_settings(table: Mapping[str, Any], *, system: bool) -> VolumeSettings:
    """Host paths jobs may mount: as configured; by default a user daemon's user's home (its
    jobs have that user's powers anyway) and nothing for the system daemon."""
    if "allowed_host_paths" not in table:
        return VolumeSettings(allowed_host_paths=() if system else (Path.home(),))
    paths = tuple(Path(p) for p in table["allowed_host_paths"])
    relative = [str(p) for p in paths if not p.is_absolute()]
    if relative:
        raise ValueError(f"volumes.allowed_host_paths must be absolute: {', '.join(relative)}")
    return VolumeSettings(allowed_host_paths=paths)


def network_settings(table: Mapping[str, Any]) -> NetworkSettings:
    ports = tuple(int(p) for p in table.get("host_ports", ()))
    if any(not 1 <= p <= 65535 for p in ports):
        raise ValueError("network.host_ports: TCP ports, 1 to 65535")
    return NetworkSettings(host_access=as_bool(table.get("host_access", False)), host_ports=ports)


def ssh_settings(table: Mapping[str, Any], *, default_port: int) -> SshSettings:
    port = int(table.get("port", default_port))
    if not 0 <= port <= 65535:
        raise ValueError("ssh.port: a TCP port, 1 to 65535 (0: no SSH gateway)")
    return SshSettings(
        enabled=as_bool(table.get("enabled", True)),
        address=str(table.get("address", "127.0.0.1")),
        port=port,
        host=str(table["host"]) if table.get("host") else None,
    )


def gpu_settings(settings: Mapping[str, Any]) -> GpuSettings:
    table = dict(settings.get("gpus", {}))
    inventory = settings.get("gpu_inventory_file") or table.get("inventory_file")
    naming = str(table.get("cdi_device_name", "auto"))
    if naming not in {"auto", "uuid", "index"}:
        raise ValueError("gpus.cdi_device_name must be auto, uuid or index")
    kind = str(table.get("cdi_kind", "nvidia.com/gpu"))
    if kind.count("/") != 1:
        raise ValueError(f"gpus.cdi_kind {kind!r} must read vendor/class")
    return GpuSettings(
        inventory_file=Path(inventory) if inventory else None,
        cdi_kind=kind,
        cdi_device_name=naming,
        cdi_spec_dirs=tuple(Path(d) for d in table.get("cdi_spec_dirs", DEFAULT_SPEC_DIRS)),
        performance={str(k): float(v) for k, v in table.get("performance", {}).items()},
    )
