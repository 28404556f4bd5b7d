"""jobd's configuration: defaults, then a TOML file, then JOBD_* environment variables, then flags.

A TOML file looks like this (every key optional):

    # read from /etc/jobd/jobd.toml (--system) or $XDG_CONFIG_HOME/jobd/jobd.toml when present
    data_dir = "/var/lib/jobd"
    socket = "/run/jobd/jobd.sock"
    tcp = true
    host = "127.0.0.1"
    port = 8427
    default_timeout_seconds = 2592000
    stop_grace_seconds = 10
    default_plan = "standard"
    publish_address = "127.0.0.1"         # where jobs' published ports listen

    [podman]
    socket = "/run/podman/podman.sock"   # omit: jobd runs its own `podman system service`
    runtime = "runc"                      # omit: runc on cgroup v1/hybrid, podman's default on v2

    [logs]
    max_bytes = 104857600                 # per run; the first head_bytes are always kept
    head_bytes = 10485760

    [plans.gpu-small]                     # add or override a plan
    memory_mb = 8192
    cpus = 4
    pids_limit = 4096
    price_per_month = 120
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

from jobd.errors import InvalidRequest
from jobd.models import DEFAULT_PLAN, DEFAULT_PLANS, DEFAULT_TIMEOUT_SECONDS, MIB, Plan

DEFAULT_PORT = 8427
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600  # as the API's timeoutSeconds
SYSTEM_DATA_DIR = Path("/var/lib/jobd")
SYSTEM_RUNTIME_DIR = Path("/run/jobd")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLimits:
    max_bytes: int = 100 * MIB  # kept per run: the head, a marker, then the newest output
    head_bytes: int = 10 * MIB
    segment_bytes: int = 8 * MIB  # the tail is trimmed, oldest first, this much at a time


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
    system: bool = False

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
    if "plans" in raw:
        settings["plans"] = raw["plans"]
    return settings


PLAN_KEYS = frozenset({"memory_mb", "cpus", "pids_limit", "price_per_month"})


def _check_tables(raw: dict[str, Any], path: Path) -> None:
    """A typo in a table is an error, as at the top level: never silently ignored."""
    known = {
        "podman": frozenset({"socket", "runtime"}),
        "logs": frozenset(f.name for f in dataclasses.fields(LogLimits)),
    }
    for name, table in raw.items():
        if not isinstance(table, dict):
            continue
        if name == "plans":
            for plan, fields in table.items():
                _only(fields, PLAN_KEYS, f"[plans.{plan}]", path)
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
}


def _from_env() -> dict[str, Any]:
    return {key: os.environ[name] for name, key in _ENV.items() if os.environ.get(name)}


def _build(settings: dict[str, Any], *, system: bool) -> Config:
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(settings) - known
    if unknown:
        raise InvalidRequest(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    try:
        config = Config(
            data_dir=Path(settings.get("data_dir") or default_data_dir(system)),
            socket=Path(settings.get("socket") or default_socket(system)),
            tcp=_as_bool(settings.get("tcp", True)),
            host=str(settings.get("host", "127.0.0.1")),
            port=int(settings.get("port", DEFAULT_PORT)),
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
            system=system,
        )
    except (TypeError, ValueError) as e:
        raise InvalidRequest(f"invalid configuration: {e}") from e
    _check(config)
    return config


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in {"0", "false", "no", "off", ""}


def _plans(extra: Mapping[str, Mapping[str, Any]]) -> dict[str, Plan]:
    plans = dict(DEFAULT_PLANS)
    for pid, fields in extra.items():
        base = plans.get(pid)
        plans[pid] = Plan(
            id=pid,
            memory_bytes=int(fields["memory_mb"]) * MIB
            if "memory_mb" in fields
            else _required(base, pid).memory_bytes,
            cpus=float(fields["cpus"]) if "cpus" in fields else _required(base, pid).cpus,
            pids_limit=int(fields.get("pids_limit", base.pids_limit if base else 4096)),
            price_per_month=fields.get("price_per_month", base.price_per_month if base else None),
        )
    return plans


def _required(base: Plan | None, pid: str) -> Plan:
    if base is None:
        raise ValueError(f"plan {pid!r} needs memory_mb and cpus")
    return base


def _check(config: Config) -> None:
    if config.default_plan not in config.plans:
        raise InvalidRequest(f"default_plan {config.default_plan!r} is not a known plan")
    if not 0 < config.default_timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise InvalidRequest(f"default_timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}")
    if config.stop_grace_seconds < 0:
        raise InvalidRequest("stop_grace_seconds must not be negative")
    if config.logs.head_bytes >= config.logs.max_bytes:
        raise InvalidRequest("logs.head_bytes must be smaller than logs.max_bytes")
    for plan in config.plans.values():
        if plan.memory_bytes <= 0 or plan.cpus <= 0 or plan.pids_limit <= 0:
            raise InvalidRequest(f"plan {plan.id!r} needs positive memory, cpus and pids")
