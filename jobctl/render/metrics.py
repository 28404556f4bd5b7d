"""Run metrics as jobctl prints them: a line per series with a small chart (a sparkline of
the series, scaled from zero to its largest point) and its figures; and `jobctl top`'s
table of the runs holding the node."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from jobctl.render.values import NONE, duration, memory, size

BARS = "▁▂▃▄▅▆▇█"
TOP_HEADERS = ("RUN", "JOB", "USER", "STATUS", "CPU", "MEMORY", "GPUS", "ELAPSED")


def sparkline(values: Sequence[float], width: int) -> str:
    """The values in at most `width` characters (neighbours averaged when there are more),
    each a bar of eight heights from zero to the largest."""
    if not values:
        return ""
    if len(values) > width:
        per = len(values) / width
        values = [
            max(values[int(i * per) : max(int((i + 1) * per), int(i * per) + 1)])
            for i in range(width)
        ]
    top = max(values)
    if top <= 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))] for v in values)


def _figure(unit: str | None, value: float) -> str:
    if unit == "cores":
        return f"{value:.2f} cores"
    if unit == "ratio":
        return f"{value * 100:.0f}%"
    return size(int(value)) or NONE


def metric_lines(doc: Mapping[str, Any], width: int) -> list[str]:
    """A line per series: its name (and GPU), its chart, its last and largest figures."""
    lines = []
    for metric in doc["metrics"]:
        name = metric["name"]
        if metric["status"] != "ok":
            lines.append(f"{name:<18} {metric.get('error') or metric['status']}")
            continue
        if not metric["series"]:
            lines.append(f"{name:<18} no samples in this window")
        for series in metric["series"]:
            label = f"{name} gpu {series['labels']['gpu']}" if series["labels"] else name
            unit = metric.get("unit")
            last, peak = series["values"][-1], max(series["maxima"])
            figures = f"{_figure(unit, last)} last, {_figure(unit, peak)} peak"
            lines.append(f"{label:<18} {sparkline(series['maxima'], width)}  {figures}")
    return lines


def usage_line(run: Mapping[str, Any]) -> str:
    usage = run.get("usage")
    if not usage:
        return "usage: no samples yet"
    average = usage.get("averageCpu")
    return (
        f"usage: {usage['cpuSeconds']:.1f} CPU-seconds,"
        f" {average if average is not None else 0:.2f} cores on average,"
        f" {usage['peakCpu']:.2f} at peak; {memory(usage['peakMemoryBytes'])} of memory at"
        f" peak ({usage['samples']} samples)"
    )


def top_row(run: Mapping[str, Any], now: datetime) -> tuple[object, ...]:
    cpu, used = run.get("cpuUsage"), run.get("memoryUsageBytes")
    started = run.get("startedAt")
    elapsed = (
        duration(int((now - datetime.fromisoformat(started)).total_seconds())) if started else None
    )
    return (
        run["runId"],
        run["jobId"],
        run.get("user") or NONE,
        run["status"],
        f"{cpu:.2f}/{run['cpus']:g}" if cpu is not None else f"-/{run['cpus']:g}",
        f"{memory(used) if used is not None else NONE}/{memory(run['memoryBytes'])}",
        ",".join(str(g.get("index")) for g in run.get("gpus", [])) or NONE,
        elapsed or NONE,
    )
