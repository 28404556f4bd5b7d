"""Readable output: tables and `key: value` blocks, all laid out by tabulate.

tabulate is imported where a table is drawn, so that `--json` and the one-line commands that
scripts call in loops do not pay for it."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB
NONE = "-"
Row = Sequence[object]


def as_json(doc: object) -> str:
    return json.dumps(doc, indent=2)


def table(headers: Sequence[str], rows: Iterable[Row]) -> str:
    from tabulate import tabulate

    # numparse off: ids such as run-1e5... or a name like "007" must print as given
    return tabulate(list(rows), headers=list(headers), tablefmt="plain", disable_numparse=True)


def details(pairs: Iterable[tuple[str, object]]) -> str:
    """`key: value` lines, values aligned in one column."""
    from tabulate import tabulate

    rows = [(f"{key}:", NONE if value is None else value) for key, value in pairs]
    return tabulate(rows, tablefmt="plain", disable_numparse=True)


# -- values ---------------------------------------------------------------------------


def local_time(value: str | None) -> str:
    """An API time (RFC 3339) in this machine's local time, to the second."""
    if not value:
        return NONE
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def memory(size: int) -> str:
    """512 MiB, 2 GiB, 23.5 GiB."""
    unit, name = (GIB, "GiB") if size >= GIB else (MIB, "MiB")
    return f"{round(size / unit, 1):g} {name}"


def duration(seconds: int | None) -> str | None:
    """Seconds as jobctl's own durations read: 2592000 -> 30d, 5400 -> 1h30m."""
    if seconds is None:
        return None
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def price(amount: float | None) -> str:
    return NONE if amount is None else f"${amount:.2f}"


def cost(run: Mapping[str, Any]) -> str:
    doc = run.get("cost")
    if not doc:
        return NONE
    return f"{doc['amount']:.6f} {doc.get('currency', '')}".rstrip()


def pairs(mapping: Mapping[str, str] | None) -> str:
    return " ".join(f"{k}={v}" for k, v in (mapping or {}).items()) or NONE


def or_none(value: object) -> object:
    return NONE if value is None or value == "" else value


def yes_no(value: object) -> str:
    return NONE if value is None else ("yes" if value else "no")


# -- jobs and runs --------------------------------------------------------------------

JOB_HEADERS = ("JOB", "NAME", "IMAGE", "STATUS", "PLAN", "CREATED", "LATEST RUN")
RUN_HEADERS = ("RUN", "STATUS", "EXIT", "REASON", "STARTED", "FINISHED", "COST")
EVENT_HEADERS = ("AT", "FROM", "TO", "DETAIL")
PLAN_HEADERS = ("PLAN", "MEMORY", "CPUS", "PIDS", "PRICE/MONTH")


def job_row(job: Mapping[str, Any]) -> Row:
    return (
        job["id"],
        or_none(job.get("name")),
        job["image"],
        or_none(job.get("status")),
        or_none(job.get("plan")),
        local_time(job.get("createdAt")),
        or_none(job.get("latestRunId")),
    )


def run_row(run: Mapping[str, Any]) -> Row:
    reason = run.get("failureReason") or {}
    return (
        run["id"],
        run["status"],
        or_none(run.get("exitCode")),
        or_none(reason.get("type")),
        local_time(run.get("startedAt")),
        local_time(run.get("finishedAt")),
        cost(run),
    )


def event_row(event: Mapping[str, Any]) -> Row:
    return (
        local_time(event.get("at")),
        or_none(event.get("from")),
        event.get("to"),
        or_none(event.get("detail")),
    )


def plan_row(plan: Mapping[str, Any], default_plan: str | None) -> Row:
    name = f"{plan['id']} (default)" if plan["id"] == default_plan else plan["id"]
    return (
        name,
        memory(plan["memoryBytes"]),
        f"{plan['cpus']:g}",
        plan["pidsLimit"],
        price(plan.get("pricePerMonth")),
    )


def job_details(job: Mapping[str, Any]) -> str:
    owner = job.get("owner") or {}
    return details(
        [
            ("id", job["id"]),
            ("name", job.get("name")),
            ("image", job["image"]),
            ("command", shlex.join(job.get("command") or []) or "(the image's own)"),
            ("env", pairs(job.get("env"))),
            ("plan", job.get("plan")),
            ("timeout", duration(job.get("timeoutSeconds"))),
            ("network", job.get("network")),
            ("labels", pairs(job.get("labels"))),
            ("owner", f"{owner.get('user')} (uid {owner.get('uid')}, via {owner.get('via')})"),
            ("created", local_time(job.get("createdAt"))),
            ("status", job.get("status")),
            ("latest run", job.get("latestRunId")),
        ]
    )


def run_details(run: Mapping[str, Any]) -> str:
    reason = run.get("failureReason")
    plan = run.get("plan") or {}
    return details(
        [
            ("id", run["id"]),
            ("job", run.get("jobId")),
            ("status", run["status"]),
            ("exit code", run.get("exitCode")),
            ("failure", f"{reason['type']}: {reason['message']}" if reason else None),
            ("plan", plan.get("id")),
            ("limits", limits(run.get("limits"))),
            ("created", local_time(run.get("createdAt"))),
            ("started", local_time(run.get("startedAt"))),
            ("finished", local_time(run.get("finishedAt"))),
            ("deadline", local_time(run.get("deadlineAt"))),
            ("timeout", duration(run.get("timeoutSeconds"))),
            ("running", _seconds(run.get("runningSeconds"))),
            ("cost", cost(run)),
        ]
    )


def limits(doc: Mapping[str, Any] | None) -> str | None:
    if not doc:
        return None
    text = (
        f"{memory(doc['memoryBytes'])}, {doc['cpus']:g} CPUs, {doc['pidsLimit']} pids"
        f" ({'enforced' if doc.get('enforced') else 'NOT enforced'})"
    )
    return f"{text}\n{doc['note']}" if doc.get("note") else text


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}s"


# -- health ---------------------------------------------------------------------------


def health_details(health: Mapping[str, Any]) -> str:
    podman = health.get("podman") or {}
    limit_doc = health.get("limits") or {}
    node = health.get("node") or {}
    daemon = health.get("daemon") or {}
    return details(
        [
            ("status", health.get("status")),
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
            ("data dir", daemon.get("dataDir")),
            ("uptime", _seconds(health.get("uptimeSeconds"))),
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
    return f"{cpu_text} CPUs, {memory(size) if size else NONE} memory"
