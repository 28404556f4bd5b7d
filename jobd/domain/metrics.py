"""Run metrics: what is sampled of each running run, what a run used in all (its usage), and
what a metrics request asks for and gets.

Each running run is sampled every few seconds: its CPU (cores, a rate over the time since
the sample before), its memory (bytes, without the page cache the kernel may reclaim) and, for
each GPU it holds, the GPU's utilisation (a ratio, 0 to 1) and the memory the run uses on it
(bytes). Samples are kept at full resolution for a while, and as one-minute averages and
maxima for longer (store/metrics.py).

A request names the metrics it wants; each comes back wrapped with its own status, so an
unknown name or a metric the run has none of (a GPU metric of a CPU run) does not fail the
rest (the cron-jobs seed's shape).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from jobd.domain.records import from_epoch, rfc3339

CPU_USAGE = "cpu_usage"
MEMORY_USAGE = "memory_usage"
GPU_UTILIZATION = "gpu_utilization"
GPU_MEMORY_USAGE = "gpu_memory_usage"
UNITS = {
    CPU_USAGE: "cores",
    MEMORY_USAGE: "bytes",
    GPU_UTILIZATION: "ratio",
    GPU_MEMORY_USAGE: "bytes",
}
GPU_METRICS = frozenset({GPU_UTILIZATION, GPU_MEMORY_USAGE})
MINUTE = 60  # the resolution samples are kept at once their full resolution is gone
MAX_POINTS = 1000  # a series in one answer: the step is widened to keep within it
MAX_NAMES = 16


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric of one run at one moment. `series` tells a run's GPUs apart (the GPU's
    index); it is empty for CPU and memory."""

    run_id: str
    name: str
    series: str
    at: float  # unix seconds
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RunUsage:
    """What a run used, as its samples saw: CPU-seconds (the kernel's own count, not a sum
    of samples), the busiest sample's CPU, the most memory, over `seconds` of sampling."""

    cpu_seconds: float = 0.0
    peak_cpu: float = 0.0
    peak_memory_bytes: int = 0
    samples: int = 0
    seconds: float = 0.0  # from the run's start to its last sample

    def updated(
        self, *, cpu_seconds: float, cpu: float | None, memory: int, seconds: float
    ) -> RunUsage:
        return RunUsage(
            cpu_seconds=max(self.cpu_seconds, cpu_seconds),
            peak_cpu=max(self.peak_cpu, cpu or 0.0),
            peak_memory_bytes=max(self.peak_memory_bytes, memory),
            samples=self.samples + 1,
            seconds=max(self.seconds, seconds),
        )

    @property
    def average_cpu(self) -> float | None:
        return self.cpu_seconds / self.seconds if self.seconds > 0 else None

    def to_api(self) -> dict[str, Any]:
        average = self.average_cpu
        return {
            "cpuSeconds": round(self.cpu_seconds, 3),
            "averageCpu": round(average, 4) if average is not None else None,
            "peakCpu": round(self.peak_cpu, 4),
            "peakMemoryBytes": self.peak_memory_bytes,
            "samples": self.samples,
        }

    def to_record(self) -> str:
        return orjson.dumps(
            [self.cpu_seconds, self.peak_cpu, self.peak_memory_bytes, self.samples, self.seconds]
        ).decode()

    @classmethod
    def from_record(cls, column: str | None) -> RunUsage | None:
        if not column:
            return None
        cpu_seconds, peak_cpu, peak_memory, samples, seconds = orjson.loads(column)
        return cls(
            cpu_seconds=cpu_seconds,
            peak_cpu=peak_cpu,
            peak_memory_bytes=peak_memory,
            samples=samples,
            seconds=seconds,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsQuery:
    """Which metrics, over which time, at which step (seconds per point)."""

    names: tuple[str, ...]
    start: float
    end: float
    step: int

    @classmethod
    def parse(
        cls,
        *,
        names: str | None,
        since: int | None,
        start: datetime | None,
        end: datetime | None,
        step: int | None,
        moment: float,
        sample_seconds: float,
    ) -> MetricsQuery:
        """From the request's parameters; ValueError says what is wrong. Without a time:
        the last hour. The step is at least the sampling interval and wide enough to keep
        each series within MAX_POINTS."""
        given = names.split(",") if names is not None else list(UNITS)
        wanted = tuple(dict.fromkeys(n.strip() for n in given))
        if not all(wanted) or len(wanted) > MAX_NAMES:
            raise ValueError(f"names: up to {MAX_NAMES} comma-separated metric names")
        if since is not None and start is not None:
            raise ValueError("since and start: give one of them")
        if since is not None and since < 1:
            raise ValueError("since: seconds back from now, at least 1")
        last = end.timestamp() if end else moment
        first = start.timestamp() if start else last - (since or 3600)
        if first >= last:
            raise ValueError("start must be before end")
        if step is not None and not 1 <= step <= 86400:
            raise ValueError("step: seconds per point, between 1 and 86400")
        least = max(math.ceil(sample_seconds), math.ceil((last - first) / MAX_POINTS))
        return cls(names=wanted, start=first, end=last, step=max(step or least, least))


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One series of points: timestamps (unix seconds, the start of each step) with the
    step's average and maximum."""

    run_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    timestamps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    maxima: list[float] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "labels": dict(self.labels),
            "timestamps": self.timestamps,
            "values": self.values,
            "maxima": self.maxima,
        }


def metrics_document(
    query: MetricsQuery,
    found: Mapping[str, list[Series]],
    gpu_runs: bool,
) -> dict[str, Any]:
    """The answer: each asked-for metric with its status. `found` holds the series of the
    known metrics; `gpu_runs` says whether any of the runs asked about holds a GPU."""
    return {
        "start": rfc3339(from_epoch(query.start)),
        "end": rfc3339(from_epoch(query.end)),
        "step": query.step,
        "metrics": [_metric(name, found.get(name, []), gpu_runs) for name in query.names],
    }


def _metric(name: str, series: list[Series], gpu_runs: bool) -> dict[str, Any]:
    if name not in UNITS:
        known = ", ".join(UNITS)
        return {
            "name": name[:64],
            "status": "unknown",
            "error": f"no such metric (known: {known})",
            "series": [],
        }
    if name in GPU_METRICS and not gpu_runs:
        return {
            "name": name,
            "unit": UNITS[name],
            "status": "unavailable",
            "error": "no GPU was assigned to these runs",
            "series": [],
        }
    return {
        "name": name,
        "unit": UNITS[name],
        "status": "ok",
        "series": [s.to_api() for s in series],
    }


def known(names: Iterable[str]) -> list[str]:
    return [n for n in names if n in UNITS]
