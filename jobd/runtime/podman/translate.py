"""Podman's shapes to jobd's: its exceptions to jobd's runtime errors, its inspect and event
dicts to `ContainerState` and `ContainerExit`, and the labels that find jobd's containers
again. Nothing of podman-py's leaves the podman package."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import podman.errors
import requests.exceptions

from jobd.errors import ContainerGone, ImageNotFound, RuntimeFailure, RuntimeUnavailable
from jobd.runtime.contract import ContainerExit, ContainerSpec, ContainerState

RUN_LABEL = "io.jobd.run-id"
JOB_LABEL = "io.jobd.job-id"
MANAGED_LABEL = "io.jobd.managed"
INSTANCE_LABEL = "io.jobd.instance"  # which jobd (data directory) owns the container
ZERO_TIME = "0001-01-01"


@contextlib.contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Map podman-py and requests exceptions to jobd's runtime errors."""
    try:
        yield
    except podman.errors.ImageNotFound as e:
        raise ImageNotFound(f"{what}: image not found: {e}") from e
    except podman.errors.NotFound as e:
        raise ContainerGone(f"{what}: {e}") from e
    except (requests.exceptions.ConnectionError, podman.errors.APIError) as e:
        if isinstance(e, podman.errors.APIError) and e.status_code is not None:
            raise _api_failure(what, e) from e
        raise RuntimeUnavailable(f"{what}: podman API unreachable: {e}") from e
    except (podman.errors.PodmanError, requests.exceptions.RequestException) as e:
        raise RuntimeFailure(f"{what}: {e}") from e


def _api_failure(what: str, e: podman.errors.APIError) -> RuntimeFailure:
    text = str(e.explanation or e)
    if e.status_code == 404 and "image" in text.lower():
        return ImageNotFound(f"{what}: {text}")
    if e.status_code == 404:
        return ContainerGone(f"{what}: {text}")
    return RuntimeFailure(f"{what}: {text}")


def labels(spec: ContainerSpec, instance: str) -> dict[str, str]:
    """What marks a container as this jobd's, and whose run it is."""
    return {
        MANAGED_LABEL: "true",
        INSTANCE_LABEL: instance,
        RUN_LABEL: spec.run_id,
        JOB_LABEL: spec.job_id,
    }


def exit_of(event: Mapping[str, Any]) -> ContainerExit | None:
    """A died event of one of jobd's containers; None for anything else."""
    actor = event.get("Actor", {})
    attributes = actor.get("Attributes", {})
    run_id = attributes.get(RUN_LABEL)
    if not run_id:
        return None
    code = attributes.get("containerExitCode")
    return ContainerExit(
        container_id=actor.get("ID", ""),
        run_id=run_id,
        exit_code=int(code) if code not in (None, "") else None,
    )


def state_of(attrs: Mapping[str, Any]) -> ContainerState:
    """A container as podman's inspect describes it."""
    state = attrs.get("State", {})
    labels = attrs.get("Config", {}).get("Labels") or {}
    status = str(state.get("Status", "unknown"))
    return ContainerState(
        container_id=str(attrs["Id"]),
        run_id=labels.get(RUN_LABEL),
        status=status,
        exit_code=state.get("ExitCode") if status in {"exited", "stopped"} else None,
        started_at=_timestamp(state.get("StartedAt")),
        finished_at=_timestamp(state.get("FinishedAt")),
        oom_killed=bool(state.get("OOMKilled", False)),
        pid=state.get("Pid") or None,
        endpoints=_endpoints(attrs.get("NetworkSettings", {}).get("Ports") or {}),
    )


def _endpoints(ports: Mapping[str, Any]) -> dict[int, str]:
    """{"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41234"}]} -> {8080: "127.0.0.1:41234"}"""
    found: dict[int, str] = {}
    for key, bindings in ports.items():
        port, _, protocol = key.partition("/")
        for binding in bindings or ():
            if protocol in ("", "tcp") and binding.get("HostPort"):
                host = binding.get("HostIp") or "0.0.0.0"
                found[int(port)] = f"{host}:{binding['HostPort']}"
    return found


def _timestamp(value: str | None) -> datetime | None:
    if not value or value.startswith(ZERO_TIME):
        return None
    return datetime.fromisoformat(value)


def repository(reference: str) -> str:
    """localhost:5000/team/app:1.2 -> localhost:5000/team/app (the tag or digest goes)."""
    name = reference.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
