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

JOB_HEADERS = ("JOB", "NAME", "IMAGE", "STATUS", "PLAN", "CREATED", "LATEST RUN", "NEXT TICK")
RUN_HEADERS = ("RUN", "STATUS", "TRIGGER", "EXIT", "REASON", "STARTED", "FINISHED", "COST")
RECIPE_HEADERS = ("RECIPE", "IMAGE", "PLAN", "DESCRIPTION", "UPDATED")
SCHEDULE_HEADERS = ("JOB", "NAME", "SCHEDULE", "TIMEZONE", "POLICY", "NEXT TICK", "LAST TICK")
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
        next_tick(job.get("schedule")),
    )


def next_tick(schedule: Mapping[str, Any] | None) -> str:
    if not schedule:
        return NONE
    if schedule.get("suspend"):
        return "suspended"
    return local_time(schedule.get("nextFireAt"))


def schedule_row(job: Mapping[str, Any]) -> Row:
    schedule = job.get("schedule") or {}
    last = schedule.get("lastTick")
    return (
        job["id"],
        or_none(job.get("name")),
        schedule.get("schedule"),
        schedule.get("timezone"),
        schedule.get("concurrencyPolicy"),
        next_tick(schedule),
        f"{local_time(last['at'])} {last['runId'] or last['note']}" if last else NONE,
    )


def recipe_row(recipe: Mapping[str, Any]) -> Row:
    return (
        recipe["name"],
        recipe.get("image"),
        or_none(recipe.get("plan")),
        or_none(recipe.get("description")),
        local_time(recipe.get("updatedAt")),
    )


def recipe_details(recipe: Mapping[str, Any]) -> str:
    if recipe.get("startCommand"):
        command = f"/bin/sh -c {shlex.quote(recipe['startCommand'])}"
    else:
        command = shlex.join(recipe.get("command") or []) or "(the image's own)"
    owner = recipe.get("owner") or {}
    return details(
        [
            ("name", recipe["name"]),
            ("description", recipe.get("description")),
            ("image", recipe.get("image")),
            ("command", command),
            ("env", pairs(recipe.get("env"))),
            ("plan", recipe.get("plan") or "(jobd's default)"),
            ("timeout", duration(recipe.get("timeoutSeconds"))),
            ("network", recipe.get("network")),
            ("kind", recipe.get("kind") or "batch"),
            ("labels", pairs(recipe.get("labels"))),
            ("retry", retry_text(recipe.get("retry"))),
            ("owner", owner.get("user")),
            ("created", local_time(recipe.get("createdAt"))),
            ("updated", local_time(recipe.get("updatedAt"))),
        ]
    )


def retry_text(retry: Mapping[str, Any] | None) -> str | None:
    if not retry:
        return None
    codes = retry.get("onExitCodes")
    parts = [
        f"up to {retry['maxAttempts']} attempts",
        f"backoff {retry['backoffSeconds']:g}s doubling",
        f"exit codes {', '.join(map(str, codes))}" if codes else "any exit code",
    ]
    if retry.get("onTimeout"):
        parts.append("timeouts")
    if not retry.get("onInfrastructure", True):
        parts.append("not infrastructure failures")
    return ", ".join(parts)


def schedule_text(schedule: Mapping[str, Any] | None) -> str | None:
    if not schedule:
        return None
    return (
        f"{schedule['schedule']} ({schedule['timezone']}), concurrency"
        f" {schedule['concurrencyPolicy']}, catch-up {schedule['catchUp']}"
    )


def status_details(doc: Mapping[str, Any]) -> str:
    schedule = doc.get("schedule") or {}
    last = schedule.get("lastTick")
    latest = doc.get("latestRun") or {}
    counts = doc.get("runCounts") or {}
    return details(
        [
            ("job", doc["jobId"]),
            ("status", doc.get("status")),
            ("latest run", f"{latest['id']} ({latest['trigger']})" if latest else None),
            (
                "runs",
                f"{doc.get('totalRuns', 0)}: " + pairs({k: str(v) for k, v in counts.items() if v}),
            ),
            ("schedule", schedule_text(schedule)),
            ("next tick", next_tick(schedule) if schedule else None),
            ("last tick", f"{local_time(last['at'])}: {last['note']}" if last else None),
        ]
    )


def run_row(run: Mapping[str, Any]) -> Row:
    reason = run.get("failureReason") or {}
    return (
        run["id"],
        run["status"],
        _trigger(run),
        or_none(run.get("exitCode")),
        or_none(reason.get("type")),
        local_time(run.get("startedAt")),
        local_time(run.get("finishedAt")),
        cost(run),
    )


def _trigger(run: Mapping[str, Any]) -> str:
    trigger = str(run.get("trigger") or NONE)
    attempt = run.get("attempt") or 1
    return f"{trigger} #{attempt}" if attempt > 1 else trigger


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
            ("resources", _requirements(job.get("resources"))),
            ("priority", job.get("priority") or None),
            ("max pending", duration(job.get("maxPendingSeconds"))),
            ("timeout", duration(job.get("timeoutSeconds"))),
            ("network", job.get("network")),
            ("kind", job.get("kind")),
            ("ports", ", ".join(map(str, job.get("ports") or [])) or None),
            ("labels", pairs(job.get("labels"))),
            ("recipe", job.get("recipe")),
            ("image digest", job.get("imageDigest")),
            ("retry", retry_text(job.get("retry"))),
            ("schedule", schedule_text(job.get("schedule"))),
            ("next tick", next_tick(job.get("schedule")) if job.get("schedule") else None),
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
            ("trigger", _trigger(run)),
            ("scheduled for", local_time(run["scheduledFor"]) if run.get("scheduledFor") else None),
            ("not before", local_time(run["notBefore"]) if run.get("notBefore") else None),
            ("exit code", run.get("exitCode")),
            ("failure", _failure(reason)),
            ("retried by", run.get("retriedBy")),
            ("endpoints", _endpoints(run.get("endpoints"))),
            ("queue", _queue(run.get("queue"))),
            ("plan", plan.get("id")),
            ("resources", _granted(plan)),
            ("gpus", _gpus(run.get("allocation"))),
            ("cpu set", (run.get("allocation") or {}).get("cpuSet")),
            ("gpu usage", _gpu_usage(run.get("gpuUsage"))),
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


def _requirements(resources: Mapping[str, Any] | None) -> str | None:
    if not resources:
        return None
    return ", ".join(f"{key}={value}" for key, value in resources.items())


def _queue(queue: Mapping[str, Any] | None) -> str | None:
    if not queue:
        return None
    return f"position {queue['position']}: {queue['reason']}"


def _granted(plan: Mapping[str, Any]) -> str | None:
    if not plan:
        return None
    text = f"{plan['cpus']:g} CPUs, {memory(plan['memoryBytes'])}"
    if plan.get("gpus"):
        text += f", {plan['gpus']} GPU{'s' if plan['gpus'] > 1 else ''}"
        if plan.get("minVramBytes"):
            text += f" with {plan['minVramBytes'] / GB:g} GB free"
        if plan.get("gpuShare"):
            text += " (shared)"
    if plan.get("storageBytes"):
        text += f", {plan['storageBytes'] / GB:g} GB disk"
    return text


def _gpus(allocation: Mapping[str, Any] | None) -> str | None:
    gpus = (allocation or {}).get("gpus") or []
    if not gpus:
        return None
    return ", ".join(f"{g['index']} {g['uuid']}{' (shared)' if g['shared'] else ''}" for g in gpus)


def _gpu_usage(usage: Mapping[str, Any] | None) -> str | None:
    if not usage:
        return None
    peak = usage.get("peakMemoryBytes")
    return (
        f"{usage['gpuSeconds']:g} GPU-seconds, {usage['normalizedSeconds']:g} normalized,"
        f" peak memory {memory(peak) if peak else NONE}"
    )


def _endpoints(endpoints: Sequence[Mapping[str, Any]] | None) -> str | None:
    if not endpoints:
        return None
    return ", ".join(f"{e['containerPort']} -> {e['address']}" for e in endpoints)


def _failure(reason: Mapping[str, Any] | None) -> str | None:
    if not reason:
        return None
    category = f" ({reason['category']})" if reason.get("category") else ""
    return f"{reason['type']}{category}: {reason['message']}"


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


# -- node -----------------------------------------------------------------------------

GB = 1000**3
CHECK_HEADERS = ("CHECK", "LEVEL", "MESSAGE")
GPU_HEADERS = ("GPU", "UUID", "MODEL", "STATE", "MEMORY FREE/TOTAL", "AVAILABLE", "RUNS", "OTHERS")
HOLDER_HEADERS = ("RUN", "JOB", "STATUS", "PLAN", "CPUS", "MEMORY", "CPU SET", "GPUS")


def check_row(check: Mapping[str, Any]) -> Row:
    return (check["name"], check["level"].upper(), check["message"])


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
        ]
    )
    parts = [summary]
    if node["gpus"]:
        parts.append(table(GPU_HEADERS, map(gpu_row, node["gpus"])))
    if node["runs"]:
        parts.append(table(HOLDER_HEADERS, map(holder_row, node["runs"])))
    return "\n\n".join(parts)


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
    gpus = node.get("gpus") or {}
    gpu_text = f", {gpus.get('count', 0)} GPUs" + (
        f" ({gpus['error']})" if gpus.get("error") else ""
    )
    return f"{cpu_text} CPUs, {memory(size) if size else NONE} memory{gpu_text}"
