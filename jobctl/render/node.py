"""The node and the daemon: plans, capacity and what each run holds, GPUs, health, and the
doctor's checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobctl.render.layout import Row, details, table
from jobctl.render.values import NONE, elapsed, memory, price, size, yes_no

PLAN_HEADERS = ("PLAN", "MEMORY", "CPUS", "GPUS", "PIDS", "PRICE/MONTH")
CHECK_HEADERS = ("CHECK", "LEVEL", "MESSAGE")
GPU_HEADERS = ("GPU", "UUID", "MODEL", "STATE", "MEMORY FREE/TOTAL", "AVAILABLE", "RUNS", "OTHERS")
HOLDER_HEADERS = ("RUN", "JOB", "STATUS", "PLAN", "CPUS", "MEMORY", "CPU SET", "GPUS")


def plan_row(plan: Mapping[str, Any], default_plan: str | None) -> Row:
    name = f"{plan['id']} (default)" if plan["id"] == default_plan else plan["id"]
    return (
        name,
        memory(plan["memoryBytes"]),
        f"{plan['cpus']:g}",
        plan_gpus(plan),
        plan["pidsLimit"],
        price(plan.get("pricePerMonth")),
    )


def plan_gpus(plan: Mapping[str, Any]) -> str:
    """How many GPUs a plan gives, and of what kind: whole ones (each with at least its
    memory), or a share of one's memory beside other runs."""
    count = plan.get("gpus") or 0
    if not count:
        return NONE
    vram = plan.get("minVramBytes") or 0
    if plan.get("gpuShare"):
        return f"{count} shared, {memory(vram)} each" if vram else f"{count} shared"
    return f"{count} whole, {memory(vram)}+ each" if vram else f"{count} whole"


def check_row(check: Mapping[str, Any]) -> Row:
    return (check["name"], check["level"].upper(), check["message"])


def doctor_details(doc: Mapping[str, Any]) -> str:
    """The checks as a table, then how to fix each that warned or failed."""
    checks = doc["checks"]
    text = table(CHECK_HEADERS, map(check_row, checks))
    footprint = _data_dir(doc.get("footprint"))
    if footprint:
        text += f"\n\ndata dir: {footprint}"
    fixes = [f"  {c['name']}: {c['fix']}" for c in checks if c.get("fix")]
    return "\n\n".join([text, "To fix:\n" + "\n".join(fixes)]) if fixes else text


def prune_summary(doc: Mapping[str, Any]) -> str:
    """What a prune removed, or would remove, and the bytes that frees."""
    verb = "would remove" if doc["dryRun"] else "removed"
    freed = "would free" if doc["dryRun"] else "freed"
    runs = doc["runs"]
    head = (
        f"{verb} {runs} finished run{'' if runs == 1 else 's'}: {freed}"
        f" {size(doc['freedBytes'])} (logs {size(doc['logBytes'])},"
        f" outputs {size(doc['outputBytes'])})"
    )
    return "\n".join([head, *(f"  {run_id}" for run_id in doc["runIds"])])


def node_details(node: Mapping[str, Any]) -> str:
    capacity, allocated, free = node["capacity"], node["allocated"], node["free"]
    source = node.get("gpuSource") or {}
    summary = details(
        [
            (
                "cpus",
                f"{capacity['cpus']} in all, {allocated['cpus']:g} allocated,"
                f" {free['cpus']:g} free",
            ),
            (
                "memory",
                f"{memory(capacity['memoryBytes'])} in all,"
                f" {memory(allocated['memoryBytes'])} allocated,"
                f" {memory(free['memoryBytes'])} free",
            ),
            (
                "disk",
                f"{memory(capacity['diskFreeBytes'])} free of"
                f" {memory(capacity['diskTotalBytes'])},"
                f" {memory(allocated['storageBytes'])} promised",
            ),
            (
                "gpus",
                f"{capacity['gpus']} in all, {allocated['gpus']} allocated,"
                f" {free['gpus']} free ({source.get('source')})",
            ),
            ("gpu note", source.get("error")),
            ("free cores", _cores(free.get("cores") or [])),
            ("queued runs", (node.get("queue") or {}).get("pending")),
            ("data dir", _data_dir(node.get("dataDir"))),
        ]
    )
    parts = [summary]
    if node["gpus"]:
        parts.append(table(GPU_HEADERS, map(gpu_row, node["gpus"])))
    if node["runs"]:
        parts.append(table(HOLDER_HEADERS, map(holder_row, node["runs"])))
    return "\n\n".join(parts)


def _data_dir(data: Mapping[str, Any] | None) -> str | None:
    """What jobd's data directory holds: in all, then its parts."""
    if not data:
        return None
    parts = ("outputs", "logs", "uploads", "volumes", "database")
    shown = ", ".join(f"{name} {size(data[f'{name}Bytes'])}" for name in parts)
    text = f"{size(data['totalBytes'])} in {data['path']} ({shown})"
    if data.get("metricsBytes") is not None:
        text += f"; metrics {size(data['metricsBytes'])} of the database"
    if data.get("filesystemBytes"):
        text += f"; {size(data['freeBytes'])} free of {size(data['filesystemBytes'])}"
    return text


def gpu_row(gpu: Mapping[str, Any]) -> Row:
    runs = ", ".join(
        f"{h['runId']}{' ' + memory(h['vramBytes']) if h.get('shared') else ''}"
        for h in gpu["allocatedTo"]
    )
    others = (
        f"{memory(gpu['foreignMemoryBytes'])} (pids {', '.join(map(str, gpu['foreignPids']))})"
        if gpu["foreignPids"]
        else NONE
    )
    return (
        gpu["index"],
        gpu["uuid"],
        gpu["name"],
        gpu["state"],
        f"{memory(gpu['memoryFreeBytes'])}/{memory(gpu['memoryTotalBytes'])}",
        memory(gpu["availableBytes"]),
        runs or NONE,
        others,
    )


def holder_row(run: Mapping[str, Any]) -> Row:
    return (
        run["runId"],
        run["jobId"],
        run["status"],
        run["plan"],
        f"{run['cpus']:g}",
        memory(run["memoryBytes"]),
        run.get("cpuSet") or "floating",
        ", ".join(g["index"] for g in run.get("gpus") or []) or NONE,
    )


def _cores(cores: Sequence[int]) -> str:
    return ",".join(map(str, cores)) or NONE


# -- health ---------------------------------------------------------------------------


def health_details(health: Mapping[str, Any]) -> str:
    podman = health.get("podman") or {}
    limit_doc = health.get("limits") or {}
    node = health.get("node") or {}
    daemon = health.get("daemon") or {}
    return details(
        [
            ("status", health.get("status")),
            ("why", "; ".join(health.get("reasons") or []) or None),
            ("version", health.get("version")),
            ("podman", _podman(podman)),
            ("cgroups", f"{podman.get('cgroupVersion')} ({podman.get('cgroupManager')})"),
            ("limits enforced", yes_no(limit_doc.get("enforced"))),
            ("missing controllers", ", ".join(limit_doc.get("missingControllers") or []) or None),
            ("limits note", limit_doc.get("note")),
            ("node", _node(node)),
            (
                "daemon",
                f"pid {daemon.get('pid')} as {daemon.get('user')} (uid {daemon.get('uid')})",
            ),
            ("data dir", _data_dir(health.get("footprint")) or daemon.get("dataDir")),
            ("uptime", elapsed(health.get("uptimeSeconds"))),
        ]
    )


def _podman(podman: Mapping[str, Any]) -> str:
    reachable = "reachable" if podman.get("reachable") else "UNREACHABLE"
    mode = "rootless" if podman.get("rootless") else "rootful"
    text = f"{podman.get('version')} ({reachable}, {mode}, {podman.get('ociRuntime')})"
    return f"{text}\n{podman['error']}" if podman.get("error") else text


def _node(node: Mapping[str, Any]) -> str:
    size = node.get("memoryBytes")
    cpus = node.get("cpus")
    cpu_text = f"{cpus:g}" if isinstance(cpus, int | float) else NONE
    gpus = node.get("gpus") or {}
    gpu_text = f", {gpus.get('count', 0)} GPUs" + (
        f" ({gpus['error']})" if gpus.get("error") else ""
    )
    return f"{cpu_text} CPUs, {memory(size) if size else NONE} memory{gpu_text}"
