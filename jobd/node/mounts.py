"""What a job's volumes are on this machine: a named volume is a directory under jobd's data
directory, made on first use; a host path must exist and lie within a path the configuration
allows, symlinks resolved, never within jobd's own data, and the run's user (its owner, on
the system daemon) must be able to reach it as the mount asks. Checked when a job is
submitted (or changed) and again when each run starts, since the configuration, the files
and the owner's groups may have changed; the kernel checks once more as the run opens it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from jobd.config import Config
from jobd.domain.identity import Identity
from jobd.domain.volumes import HostMount, VolumeMount
from jobd.errors import Forbidden, NotHere
from jobd.node.accounts import may_reach

VOLUME_MODE = 0o777  # any user a job runs as may write its volumes (the data dir is private)


def check_host_paths(mounts: Iterable[VolumeMount], config: Config, identity: Identity) -> None:
    """Forbidden or NotHere naming a host path that may not be mounted, by the configuration
    or because the run's user (`identity`) may not reach it as the mount asks. Blocks: call
    it in a thread."""
    for index, mount in enumerate(mounts):
        if mount.host_path:
            _allowed(f"volumes/{index}/source", mount, config, identity)


def resolved(
    mounts: Iterable[VolumeMount], config: Config, identity: Identity
) -> tuple[HostMount, ...]:
    """The mounts as the runtime takes them, named volumes' directories made; Forbidden or
    NotHere naming a host path that may not be mounted. Blocks: call it in a thread."""
    return tuple(_resolved(index, mount, config, identity) for index, mount in enumerate(mounts))


def volume_dir(name: str, config: Config) -> Path:
    return config.volumes_dir / name


def make_volume_dir(name: str, config: Config) -> Path:
    """The named volume's directory, made if missing (writable by any user a job runs as)."""
    directory = volume_dir(name, config)
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, VOLUME_MODE)
    return directory


def _resolved(index: int, mount: VolumeMount, config: Config, identity: Identity) -> HostMount:
    if not mount.host_path:
        path = make_volume_dir(mount.source, config)
    else:
        path = _allowed(f"volumes/{index}/source", mount, config, identity)
    return HostMount(host_path=str(path), target=mount.target, read_only=mount.read_only)


def _allowed(where: str, mount: VolumeMount, config: Config, identity: Identity) -> Path:
    real = _configured(where, Path(mount.source), config)
    if not may_reach(real, identity, write=not mount.read_only):
        access = "read" if mount.read_only else "read and write"
        raise Forbidden(
            f"{where}: the job runs as uid {identity.uid}, which may not {access} {real}"
        )
    return real


def _configured(where: str, source: Path, config: Config) -> Path:
    try:
        real = source.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise NotHere(f"{where}: {source} does not exist on this machine") from None
    except PermissionError:
        raise Forbidden(f"{where}: jobd may not look into {source}") from None
    own = config.data_dir.resolve()
    if _within(real, own) or _within(own, real):
        raise Forbidden(f"{where}: {real} holds jobd's own data ({own}); it can't be mounted")
    roots = [Path(r).resolve() for r in config.volumes.allowed_host_paths]
    if not any(_within(real, root) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "none (volumes.allowed_host_paths)"
        raise Forbidden(
            f"{where}: {real} is not within a host path jobs may mount; allowed: {allowed}"
        )
    return real


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
