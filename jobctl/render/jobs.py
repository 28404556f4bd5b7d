"""Jobs, their runs, schedules and run events, as rows and as details."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from jobctl.render.layout import Row, details
from jobctl.render.progress import array_counts, array_text, progress_details, progress_summary
from jobctl.render.values import (
    NONE,
    cost,
    duration,
    elapsed,
    inputs,
    local_time,
    memory,
    mounts,
    or_none,
    pairs,
    size,
    utc_now,
)

RUN_HEADERS = ("RUN", "STATUS", "TRIGGER", "EXIT", "REASON", "STARTED", "FINISHED", "COST")
SCHEDULE_HEADERS = ("JOB", "NAME", "SCHEDULE", "TIMEZONE", "POLICY", "NEXT TICK", "LAST TICK")
EVENT_HEADERS = ("AT", "FROM", "TO", "DETAIL")


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
            *_given(("progress", progress_summary(latest, utc_now()))),
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
    """What made the run: `api`, `retry #2`; an array's run with its index (`api, index 3`)."""
    trigger = str(run.get("trigger") or NONE)
    attempt = run.get("attempt") or 1
    made = f"{trigger} #{attempt}" if attempt > 1 else trigger
    index = run.get("arrayIndex")
    return made if index is None else f"{made}, index {index}"


def event_row(event: Mapping[str, Any]) -> Row:
    return (
        local_time(event.get("at")),
        or_none(event.get("from")),
        event.get("to"),
        or_none(event.get("detail")),
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
            ("secret env", ", ".join(job.get("secretEnvNames") or []) or None),
            ("plan", job.get("plan")),
            ("resources", _requirements(job.get("resources"))),
            ("priority", job.get("priority") or None),
            ("max pending", duration(job.get("maxPendingSeconds"))),
            ("timeout", duration(job.get("timeoutSeconds"))),
            ("network", job.get("network")),
            ("kind", job.get("kind")),
            ("ports", ", ".join(map(str, job.get("ports") or [])) or None),
            ("volumes", mounts(job.get("volumes"))),
            ("inputs", inputs(job.get("inputs"))),
            ("workdir", job.get("workingDir")),
            ("user", job.get("user")),
            ("output limit", size(job.get("outputLimitBytes"))),
            ("labels", pairs(job.get("labels"))),
            ("recipe", job.get("recipe")),
            ("image digest", job.get("imageDigest")),
            ("retry", retry_text(job.get("retry"))),
            ("schedule", schedule_text(job.get("schedule"))),
            ("next tick", next_tick(job.get("schedule")) if job.get("schedule") else None),
            ("owner", f"{owner.get('user')} (uid {owner.get('uid')}, via {owner.get('via')})"),
            ("project", job.get("project")),
            ("created", local_time(job.get("createdAt"))),
            ("status", job.get("status")),
            *_given(
                ("array", array_text(job.get("array"))),
                ("array runs", array_counts(job["arrayRuns"])[2] if job.get("arrayRuns") else None),
            ),
            ("latest run", job.get("latestRunId")),
            *_given(("progress", progress_summary(job.get("latestRun"), utc_now()))),
        ]
    )


def _given(*pairs: tuple[str, object]) -> list[tuple[str, object]]:
    """The lines that say something: the others are left out, not shown as `-`."""
    return [(key, value) for key, value in pairs if value is not None]


def run_details(run: Mapping[str, Any]) -> str:
    reason = run.get("failureReason")
    plan = run.get("plan") or {}
    return details(
        [
            ("id", run["id"]),
            ("job", run.get("jobId")),
            ("status", run["status"]),
            *progress_details(run, utc_now()),
            ("trigger", _trigger(run)),
            ("scheduled for", local_time(run["scheduledFor"]) if run.get("scheduledFor") else None),
            ("not before", local_time(run["notBefore"]) if run.get("notBefore") else None),
            ("exit code", run.get("exitCode")),
            ("failure", _failure(reason)),
            ("retried by", run.get("retriedBy")),
            ("after", _after(run.get("after"))),
            ("array", _array_index(run)),
            ("endpoints", _endpoints(run.get("endpoints"))),
            ("ssh", (run.get("ssh") or {}).get("command")),
            ("outputs", _outputs(run.get("output"))),
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
            ("running", elapsed(run.get("runningSeconds"))),
            ("cost", cost(run)),
        ]
    )


def _requirements(resources: Mapping[str, Any] | None) -> str | None:
    if not resources:
        return None
    return ", ".join(f"{key}={value}" for key, value in resources.items())


def _after(after: list[Mapping[str, Any]] | None) -> str | None:
    """What a run waits (or waited) on: `run-… ok, array run-… any`."""
    if not after:
        return None
    return ", ".join(
        f"{'array ' if d.get('array') else ''}{d['id']} {d['condition']}" for d in after
    )


def _array_index(run: Mapping[str, Any]) -> str | None:
    if run.get("arrayIndex") is None:
        return None
    return f"index {run['arrayIndex']} of {run['arrayId']}"


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
            text += f" with {memory(plan['minVramBytes'])} free"
        if plan.get("gpuShare"):
            text += " (shared)"
    if plan.get("storageBytes"):
        text += f", {memory(plan['storageBytes'])} disk"
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


def _outputs(summary: Mapping[str, Any] | None) -> str | None:
    if not summary:
        return None
    text = f"{summary['files']} files, {size(summary['bytes'])}"
    if not summary.get("kept"):
        return text + " (no longer kept)"
    return text + (f"; preview {summary['previewUrl']}" if summary.get("previewUrl") else "")
