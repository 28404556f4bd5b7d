"""GET /metrics in Prometheus' exposition format (or OpenMetrics, when the scraper asks for
it), behind the API's own authentication. A registry of jobd's own holds the API's request
counts and latency histograms, observed by a middleware, and a collector that turns the
snapshot read at scrape time (services/telemetry.py) into metric families. Names follow
Prometheus' conventions: a `jobd_` prefix, base units, `_total` on counters."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from jobd.api.context import SERVICES
from jobd.api.middleware import Handler
from jobd.domain.states import RunStatus
from jobd.services.telemetry import Snapshot
from jobd.users import name_or

UNKNOWN = "unknown"  # the user label of a run without a uid
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SnapshotCollector(Collector):
    """The metric families of the snapshot taken for the scrape under way."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if self.snapshot is not None:
            yield from families(self.snapshot)


class Prometheus:
    """jobd's registry: the requests the API served, and the snapshot's families."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.collector = SnapshotCollector()
        self.registry.register(self.collector)
        self.requests = Counter(
            "jobd_http_requests",
            "API requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jobd_http_request_duration_seconds",
            "How long API requests took to answer (a streamed one: until it ended), by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._counted: dict[tuple[str, str, int], Counter] = {}
        self._timed: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered (the children are kept: labels() is the costly part)."""
        counted = self._counted.get((method, route, status))
        if counted is None:
            counted = self._counted[(method, route, status)] = self.requests.labels(
                method, route, str(status)
            )
        counted.inc()
        timed = self._timed.get((method, route))
        if timed is None:
            timed = self._timed[(method, route)] = self.latency.labels(method, route)
        timed.observe(seconds)


PROMETHEUS = web.AppKey("prometheus", Prometheus)


@web.middleware
async def request_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    began = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[PROMETHEUS].observe(request.method, route, status, time.perf_counter() - began)


async def scrape(request: web.Request) -> web.Response:
    prometheus = request.app[PROMETHEUS]
    snapshot = await request.app[SERVICES].telemetry.snapshot()
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    prometheus.collector.snapshot = snapshot  # read by the encoder, with no await between
    body = encoder(prometheus.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


def families(s: Snapshot) -> Iterator[Metric]:
    yield from _runs(s)
    yield from _node(s)
    yield from _gpus(s)
    yield SummaryMetricFamily(
        "jobd_placement_pass_seconds",
        "Placement passes and the time they took (reading the queue, deciding, recording)",
        count_value=s.passes.count,
        sum_value=s.passes.seconds,
    )
    yield CounterMetricFamily(
        "jobd_log_bytes", "Log bytes taken in from runs since jobd started", value=s.log_bytes
    )
    yield from _log_stream(s)
    yield from _markers(s)
    yield GaugeMetricFamily(
        "jobd_store_bytes",
        "The SQLite store's size on disk (database and WAL)",
        value=s.store_bytes,
    )
    yield GaugeMetricFamily(
        "jobd_start_time_seconds", "When this jobd started (unix time)", value=s.started
    )


def _log_stream(s: Snapshot) -> Iterator[Metric]:
    """[log_stream]'s lines sent and dropped (only when it is configured)."""
    totals = s.log_stream
    if totals is None:
        return
    sent = CounterMetricFamily(
        "jobd_log_stream_sent_lines",
        "Run output lines forwarded to the log stream",
        labels=["target"],
    )
    sent.add_metric([totals.target], totals.sent)
    yield sent
    dropped = CounterMetricFamily(
        "jobd_log_stream_dropped_lines",
        "Run output lines not forwarded: the queue was full, or the endpoint unreachable",
        labels=["target", "reason"],
    )
    dropped.add_metric([totals.target, "queue_full"], totals.dropped_full)
    dropped.add_metric([totals.target, "unsent"], totals.dropped_unsent)
    yield dropped


def _markers(s: Snapshot) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "jobd_progress_markers_ignored",
        "Marker lines (::jobd ...) runs printed that said nothing jobd understands",
        value=s.markers.ignored,
    )
    yield CounterMetricFamily(
        "jobd_progress_writes",
        "Runs' progress records written (at most one a second per run)",
        value=s.markers.writes,
    )


def _runs(s: Snapshot) -> Iterator[Metric]:
    runs = GaugeMetricFamily("jobd_runs", "Runs in the store, by status", labels=["status"])
    for status in RunStatus:
        runs.add_metric([status.value], s.statuses.get(status.value, 0))
    yield runs
    yield GaugeMetricFamily(
        "jobd_queue_length", "Runs waiting to be placed", value=s.statuses.get("pending", 0)
    )
    age = s.moment - s.oldest_pending if s.oldest_pending is not None else 0.0
    yield GaugeMetricFamily(
        "jobd_queue_oldest_pending_age_seconds",
        "How long the longest-waiting queued run has waited (0: none waits)",
        value=max(0.0, age),
    )
    by_user = GaugeMetricFamily(
        "jobd_user_running_runs",
        "Runs holding resources (assigned, running, cancelling), by owner",
        labels=["user"],
    )
    holding = collections.Counter(name_or(r.owner_uid, UNKNOWN) for r in s.active)
    for user, count in sorted(holding.items()):
        by_user.add_metric([user], count)
    yield by_user
    cpu = GaugeMetricFamily(
        "jobd_run_cpu_usage_cores",
        "Each running run's CPU at its last sample",
        labels=["run_id", "job_id", "user"],
    )
    memory = GaugeMetricFamily(
        "jobd_run_memory_usage_bytes",
        "Each running run's memory at its last sample (without reclaimable page cache)",
        labels=["run_id", "job_id", "user"],
    )
    progress = GaugeMetricFamily(
        "jobd_run_progress_ratio",
        "Each running run's progress, 0..1, as its last `::jobd progress` line said",
        labels=["run_id", "job_id", "user"],
    )
    for run in s.active:
        latest = s.latest.get(run.id, {})
        labels = [run.id, run.job_id, name_or(run.owner_uid, UNKNOWN)]
        if "cpu_usage" in latest:
            cpu.add_metric(labels, latest["cpu_usage"])
        if "memory_usage" in latest:
            memory.add_metric(labels, latest["memory_usage"])
        if run.progress is not None and run.progress.fraction is not None:
            progress.add_metric(labels, run.progress.fraction)
    yield cpu
    yield memory
    yield progress


def _node(s: Snapshot) -> Iterator[Metric]:
    node, free = s.node, s.free
    held = sum(1 for g in free.gpus if g.exclusive or g.shared)
    for name, what, total, allocated in (
        ("cpus", "CPUs", node.cpus, node.cpus - free.cpus),
        ("memory_bytes", "Memory, bytes", node.memory_bytes, node.memory_bytes - free.memory_bytes),
        ("gpus", "GPUs", len(node.gpus.gpus), held),
    ):
        yield GaugeMetricFamily(f"jobd_node_{name}", f"{what} the node has", value=total)
        yield GaugeMetricFamily(
            f"jobd_allocated_{name}", f"{what} held by runs (their plans')", value=allocated
        )


def _gpus(s: Snapshot) -> Iterator[Metric]:
    labels = ["gpu", "uuid", "model"]
    utilization = GaugeMetricFamily(
        "jobd_gpu_utilization_ratio",
        "Each GPU's utilisation (0 to 1), as NVML last read it",
        labels=labels,
    )
    used = GaugeMetricFamily(
        "jobd_gpu_memory_used_bytes", "Each GPU's memory in use", labels=labels
    )
    total = GaugeMetricFamily("jobd_gpu_memory_total_bytes", "Each GPU's memory", labels=labels)
    foreign = GaugeMetricFamily(
        "jobd_gpu_foreign_memory_bytes",
        "Each GPU's memory used by processes jobd did not start",
        labels=labels,
    )
    holders = GaugeMetricFamily(
        "jobd_gpu_runs", "Runs holding each GPU (whole or shared)", labels=labels
    )
    for state in s.free.gpus:
        gpu = state.gpu
        values = [gpu.index, gpu.uuid, gpu.name]
        if gpu.utilization is not None:
            utilization.add_metric(values, gpu.utilization / 100)
        used.add_metric(values, gpu.memory_used)
        total.add_metric(values, gpu.memory_total)
        foreign.add_metric(values, state.foreign_bytes)
        holders.add_metric(values, 1 if state.exclusive else len(state.shared))
    yield from (utilization, used, total, foreign, holders)
