"""jobd's configuration: defaults, then a TOML file, then JOBD_* environment variables, then flags.

The TOML file is read from --config, JOBD_CONFIG, /etc/jobd/jobd.toml (--system) or
$XDG_CONFIG_HOME/jobd/jobd.toml. Every key, with what it does, is in examples/jobd.toml (a test
loads it); an unknown key or table is an error, never ignored.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobd.config.tables import (
    GpuSettings,
    LogLimits,
    LogStreamSettings,
    MetricSettings,
    NetworkSettings,
    OutputSettings,
    SshSettings,
    UploadSettings,
    VolumeSettings,
    as_bool,
    gpu_settings,
    network_settings,
    ssh_settings,
    volume_settings,
)
from jobd.domain.jobs import DEFAULT_TIMEOUT_SECONDS
from jobd.domain.resources import DEFAULT_PLAN, DEFAULT_PLANS, GB, MIB, Plan
from jobd.domain.retention import Retention
from jobd.domain.sharing import Sharing
from jobd.errors import InvalidRequest

DEFAULT_PORT = 8427  # the system daemon's, and root's
USER_PORT_BASE, USER_PORT_SPAN = 10000, 22000  # other users': below the ephemeral ports
DEFAULT_SSH_PORT = 8422  # the SSH gateway's, for the system daemon and root's
# other users' gateways: above Linux's ephemeral ports (32768-60999), apart from the HTTP ones
USER_SSH_PORT_BASE, USER_SSH_PORT_SPAN = 61000, 4500
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600  # as the API's timeoutSeconds
MAX_PRIORITY = 1000  # as the API's priority
SYSTEM_DATA_DIR = Path("/var/lib/jobd")
SYSTEM_RUNTIME_DIR = Path("/run/jobd")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    data_dir: Path
    socket: Path
    tcp: bool = True
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    podman_socket: Path | None = None
    podman_runtime: str | None = None
    default_timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    stop_grace_seconds: int = 10
    publish_address: str = "127.0.0.1"  # host address jobs' ports are published on
    default_plan: str = DEFAULT_PLAN
    plans: Mapping[str, Plan] = field(default_factory=lambda: dict(DEFAULT_PLANS))
    logs: LogLimits = field(default_factory=LogLimits)
    gpus: GpuSettings = field(default_factory=GpuSettings)
    volumes: VolumeSettings = field(default_factory=VolumeSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    outputs: OutputSettings = field(default_factory=OutputSettings)
    uploads: UploadSettings = field(default_factory=UploadSettings)
    metrics: MetricSettings = field(default_factory=MetricSettings)
    log_stream: LogStreamSettings = field(default_factory=LogStreamSettings)
    retention: Retention = field(default_factory=Retention)  # what is kept of finished runs
    ssh: SshSettings = field(default_factory=SshSettings)  # the SSH gateway into jobs
    cpu_pinning: bool = True
    max_priority: int = 0  # for users other than the daemon's own and root
    max_priority_by_user: Mapping[str, int] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()  # besides root and the daemon's own user
    audit_keep_days: float = 90.0  # the audit log's entries are deleted after this long
    max_streams_per_user: int = 64  # followed logs and exec sessions a user holds open at once
    auth_free_failures: int = 5  # failed authentications from one peer answered at once
    sharing: Sharing = field(default_factory=Sharing)  # projects, quotas, fair share
    system: bool = False

    def is_admin(self, user: str, uid: int | None) -> bool:
        """Whether this user administers jobd: sees and acts on every user's records."""
        return uid in (0, os.getuid()) or user in self.admins

    def priority_limit(self, user: str, uid: int | None) -> int:
        """The highest priority this owner may give a job."""
        if uid in (0, os.getuid()):
            return MAX_PRIORITY
        return self.max_priority_by_user.get(user, self.max_priority)

    @property
    def database(self) -> Path:
        return self.data_dir / "jobd.db"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "token"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def runtime_dir(self) -> Path:
        return self.socket.parent

    @property
    def outputs_dir(self) -> Path:
        """Where each run's /outputs is kept, a directory per run."""
        return self.data_dir / "outputs"

    @property
    def volumes_dir(self) -> Path:
        """Where the named volumes jobd manages are kept, a directory each."""
        return self.data_dir / "volumes"

    @property
    def uploads_dir(self) -> Path:
        """Where uploads are kept: each upload's file, and one blob per content it links to."""
        return self.data_dir / "uploads"


def default_data_dir(system: bool = False) -> Path:
    if system:
        return SYSTEM_DATA_DIR
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "jobd"


def default_socket(system: bool = False) -> Path:
    """$XDG_RUNTIME_DIR/jobd/jobd.sock; /run/jobd/jobd.sock for --system. Without
    XDG_RUNTIME_DIR (root on a machine without a login session), /run/jobd for root and
    /tmp/jobd-UID for other users. jobctl computes the same path."""
    if system:
        return SYSTEM_RUNTIME_DIR / "jobd.sock"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "jobd" / "jobd.sock"
    if os.getuid() == 0:
        return SYSTEM_RUNTIME_DIR / "jobd.sock"
    return Path(f"/tmp/jobd-{os.getuid()}") / "jobd.sock"


def default_port(system: bool = False) -> int:
    """8427 for the system daemon and root's; users' own daemons don't share one port."""
    uid = os.getuid()
    return DEFAULT_PORT if system or uid == 0 else USER_PORT_BASE + uid % USER_PORT_SPAN


def default_ssh_port(system: bool = False) -> int:
    """The SSH gateway's: 8422 for the system daemon and root's; users' own daemons each
    another, above the ephemeral ports (61000 + uid % 4500)."""
    uid = os.getuid()
    if system or uid == 0:
        return DEFAULT_SSH_PORT
    return USER_SSH_PORT_BASE + uid % USER_SSH_PORT_SPAN


def default_podman_runtime() -> str | None:
    """crun fails on cgroup v1/hybrid hosts (ENVIRONMENT.md): use runc there when installed."""
    if is_cgroup_v2_only() or shutil.which("runc") is None:
        return None
    return "runc"


def is_cgroup_v2_only() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def load(*, config_file: Path | None, overrides: Mapping[str, Any], system: bool = False) -> Config:
    """Layers: defaults < TOML file < JOBD_* environment < explicit overrides (flags)."""
    settings: dict[str, Any] = {}
    path = config_file or _env_path("JOBD_CONFIG") or _existing(default_config_file(system))
    if path is not None:
        settings.update(_read_toml(path))
    settings.update(_from_env())
    settings.update({k: v for k, v in overrides.items() if v is not None})
    system = system or bool(settings.pop("system", False))
    return _build(settings, system=system)


def default_config_file(system: bool = False) -> Path:
    """/etc/jobd/jobd.toml for --system; $XDG_CONFIG_HOME/jobd/jobd.toml otherwise. Read
    when it exists; --config or JOBD_CONFIG name another."""
    if system:
        return Path("/etc/jobd/jobd.toml")
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "jobd" / "jobd.toml"


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InvalidRequest(f"config file {path}: {e}") from e
    _check_tables(raw, path)
    settings: dict[str, Any] = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    podman = raw.get("podman", {})
    if "socket" in podman:
        settings["podman_socket"] = podman["socket"]
    if "runtime" in podman:
        settings["podman_runtime"] = podman["runtime"]
    if "logs" in raw:
        settings["logs"] = raw["logs"]
    for table in (
        "plans", "gpus", "max_priority_by_user", "volumes", "network", "outputs", "uploads",
        "metrics", "projects", "quotas", "fair_share", "retention", "log_stream", "ssh",
    ):  # fmt: skip
        if table in raw:
            settings[table] = raw[table]
    return settings


PLAN_KEYS = frozenset(
    {
        "memory_mb",
        "cpus",
        "pids_limit",
        "price_per_month",
        "gpus",
        "min_vram_gb",
        "gpu_share",
        "storage_gb",
    }
)
GPU_KEYS = frozenset(
    {"inventory_file", "cdi_kind", "cdi_device_name", "cdi_spec_dirs", "performance"}
)


def _check_tables(raw: dict[str, Any], path: Path) -> None:
    """A typo in a table is an error, as at the top level: never silently ignored."""
    known = {
        "podman": frozenset({"socket", "runtime"}),
        "logs": frozenset(f.name for f in dataclasses.fields(LogLimits)),
        "volumes": frozenset(f.name for f in dataclasses.fields(VolumeSettings)),
        "network": frozenset(f.name for f in dataclasses.fields(NetworkSettings)),
        "outputs": frozenset(f.name for f in dataclasses.fields(OutputSettings)),
        "uploads": frozenset(f.name for f in dataclasses.fields(UploadSettings)),
        "metrics": frozenset(f.name for f in dataclasses.fields(MetricSettings)),
        "log_stream": frozenset(f.name for f in dataclasses.fields(LogStreamSettings)),
        "ssh": frozenset(f.name for f in dataclasses.fields(SshSettings)),
        "retention": frozenset({"keep_last", "max_age", "interval"}),
    }
    for name, table in raw.items():
        if not isinstance(table, dict):
            continue
        if name == "plans":
            for plan, fields in table.items():
                _only(fields, PLAN_KEYS, f"[plans.{plan}]", path)
        elif name == "gpus":
            _only(table, GPU_KEYS, "[gpus]", path)
        elif name in ("max_priority_by_user", "projects", "quotas", "fair_share"):
            continue  # checked where they are read
        elif name in known:
            _only(table, known[name], f"[{name}]", path)
        else:
            raise InvalidRequest(f"config file {path}: unknown table [{name}]")


def _only(table: Any, allowed: frozenset[str], where: str, path: Path) -> None:
    if not isinstance(table, dict):
        raise InvalidRequest(f"config file {path}: {where} must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise InvalidRequest(
            f"config file {path}: unknown keys in {where}: {', '.join(sorted(unknown))}"
        )


_ENV = {
    "JOBD_DATA_DIR": "data_dir",
    "JOBD_SOCKET": "socket",
    "JOBD_HOST": "host",
    "JOBD_PORT": "port",
    "JOBD_TCP": "tcp",
    "JOBD_PODMAN_SOCKET": "podman_socket",
    "JOBD_PODMAN_RUNTIME": "podman_runtime",
    "JOBD_DEFAULT_TIMEOUT_SECONDS": "default_timeout_seconds",
    "JOBD_STOP_GRACE_SECONDS": "stop_grace_seconds",
    "JOBD_PUBLISH_ADDRESS": "publish_address",
    "JOBD_GPU_INVENTORY": "gpu_inventory_file",
    "JOBD_SSH_PORT": "ssh_port",
}


def _from_env() -> dict[str, Any]:
    return {key: os.environ[name] for name, key in _ENV.items() if os.environ.get(name)}


def _admins(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("admins: a list of user names")
    return frozenset(value)


def _build(settings: dict[str, Any], *, system: bool) -> Config:
    known = {f.name for f in dataclasses.fields(Config)} - {"sharing"}
    known |= {"gpu_inventory_file", "projects", "quotas", "fair_share", "ssh_port"}
    unknown = set(settings) - known
    if unknown:
        raise InvalidRequest(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    try:
        config = Config(
            data_dir=Path(settings.get("data_dir") or default_data_dir(system)),
            socket=Path(settings.get("socket") or default_socket(system)),
            tcp=as_bool(settings.get("tcp", True)),
            host=str(settings.get("host", "127.0.0.1")),
            port=int(settings.get("port", default_port(system))),
            podman_socket=Path(settings["podman_socket"])
            if settings.get("podman_socket")
            else None,
            podman_runtime=settings.get("podman_runtime") or default_podman_runtime(),
            default_timeout_seconds=int(
                settings.get("default_timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
            ),
            stop_grace_seconds=int(settings.get("stop_grace_seconds", 10)),
            publish_address=str(settings.get("publish_address", "127.0.0.1")),
            default_plan=str(settings.get("default_plan", DEFAULT_PLAN)),
            plans=_plans(settings.get("plans", {})),
            logs=LogLimits(**settings.get("logs", {})),
            gpus=gpu_settings(settings),
            volumes=volume_settings(settings.get("volumes", {}), system=system),
            network=network_settings(settings.get("network", {})),
            outputs=OutputSettings(**settings.get("outputs", {})),
            uploads=UploadSettings(**settings.get("uploads", {})),
            metrics=MetricSettings(**settings.get("metrics", {})),
            log_stream=LogStreamSettings(**settings.get("log_stream", {})),
            retention=Retention.from_table(settings.get("retention", {})),
            ssh=_ssh(settings, system),
            cpu_pinning=as_bool(settings.get("cpu_pinning", True)),
            max_priority=int(settings.get("max_priority", 0)),
            max_priority_by_user={
                str(k): int(v) for k, v in settings.get("max_priority_by_user", {}).items()
            },
            admins=_admins(settings.get("admins", [])),
            audit_keep_days=float(settings.get("audit_keep_days", 90.0)),
            max_streams_per_user=int(settings.get("max_streams_per_user", 64)),
            auth_free_failures=int(settings.get("auth_free_failures", 5)),
            sharing=Sharing.from_tables(
                settings.get("projects", {}), settings.get("quotas", {}), settings.get("fair_share")
            ),
            system=system,
        )
    except (TypeError, ValueError) as e:
        raise InvalidRequest(f"invalid configuration: {e}") from e
    _check(config)
    return config


def _ssh(settings: Mapping[str, Any], system: bool) -> SshSettings:
    table = dict(settings.get("ssh", {}))
    if settings.get("ssh_port") is not None:  # JOBD_SSH_PORT
        table["port"] = settings["ssh_port"]
    return ssh_settings(table, default_port=default_ssh_port(system))


def _plans(extra: Mapping[str, Mapping[str, Any]]) -> dict[str, Plan]:
    plans = dict(DEFAULT_PLANS)
    for pid, fields in extra.items():
        if pid == "custom":
            raise ValueError('"custom" names a job\'s own resources: choose another plan name')
        base = plans.get(pid) or Plan(id=pid, memory_bytes=0, cpus=0)
        if pid not in plans and not {"memory_mb", "cpus"} <= set(fields):
            raise ValueError(f"plan {pid!r} needs memory_mb and cpus")
        plans[pid] = Plan(
            id=pid,
            memory_bytes=int(fields.get("memory_mb", base.memory_bytes // MIB)) * MIB,
            cpus=float(fields.get("cpus", base.cpus)),
            pids_limit=int(fields.get("pids_limit", base.pids_limit)),
            price_per_month=fields.get("price_per_month", base.price_per_month),
            gpus=int(fields.get("gpus", base.gpus)),
            min_vram_bytes=round(float(fields.get("min_vram_gb", base.min_vram_bytes / GB)) * GB),
            gpu_share=as_bool(fields.get("gpu_share", base.gpu_share)),
            storage_bytes=round(float(fields.get("storage_gb", base.storage_bytes / GB)) * GB),
        )
    return plans


def _check(config: Config) -> None:
    if config.default_plan not in config.plans:
        raise InvalidRequest(f"default_plan {config.default_plan!r} is not a known plan")
    if not 0 < config.default_timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise InvalidRequest(f"default_timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}")
    if config.stop_grace_seconds < 0:
        raise InvalidRequest("stop_grace_seconds must not be negative")
    if min(config.max_streams_per_user, config.audit_keep_days, config.auth_free_failures + 1) <= 0:
        raise InvalidRequest(
            "max_streams_per_user and audit_keep_days must be positive, auth_free_failures"
            " not negative"
        )
    if config.logs.head_bytes >= config.logs.max_bytes:
        raise InvalidRequest("logs.head_bytes must be smaller than logs.max_bytes")
    _check_storage(config)
    problem = config.log_stream.check()
    if problem is not None:
        raise InvalidRequest(problem)
    _check_plans(config)


def _check_plans(config: Config) -> None:
    for plan in config.plans.values():
        if plan.memory_bytes <= 0 or plan.cpus <= 0 or plan.pids_limit <= 0:
            raise InvalidRequest(f"plan {plan.id!r} needs positive memory, cpus and pids")
        if plan.gpus < 0 or plan.min_vram_bytes < 0 or plan.storage_bytes < 0:
            raise InvalidRequest(
                f"plan {plan.id!r}: gpus, min_vram_gb and storage_gb can't be negative"
            )
        if plan.gpu_share and not (plan.gpus and plan.min_vram_bytes):
            raise InvalidRequest(f"plan {plan.id!r}: gpu_share needs gpus and min_vram_gb")


def _check_storage(config: Config) -> None:
    outputs = config.outputs
    if outputs.limit_bytes <= 0 or outputs.sample_seconds <= 0 or outputs.disk_reserve_bytes < 0:
        raise InvalidRequest("outputs: limit_bytes and sample_seconds must be positive")
    if config.uploads.max_bytes <= 0 or config.uploads.expire_days <= 0:
        raise InvalidRequest("uploads: max_bytes and expire_days must be positive")
    metrics = config.metrics
    if not (
        0.5 <= metrics.sample_seconds <= 3600 and metrics.full_hours > 0 and metrics.keep_days > 0
    ):
        raise InvalidRequest(
            "metrics: sample_seconds between 0.5 and 3600, full_hours and keep_days positive"
        )
