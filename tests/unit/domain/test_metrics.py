"""What a metrics request asks for (times, step, names) and what a run used."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobd.domain.metrics import MetricsQuery, RunUsage, Series, metrics_document

NOW = 1_800_000_000.0


def parse(**given: object) -> MetricsQuery:
    params: dict[str, object] = dict(
        names=None, since=None, start=None, end=None, step=None, moment=NOW, sample_seconds=5.0
    )
    params.update(given)
    return MetricsQuery.parse(**params)  # type: ignore[arg-type]


def test_by_default_the_last_hour_of_every_metric_at_a_step_within_1000_points() -> None:
    query = parse()
    assert query.names == ("cpu_usage", "memory_usage", "gpu_utilization", "gpu_memory_usage")
    assert (query.start, query.end) == (NOW - 3600, NOW)
    assert query.step == 5, "an hour at 5 s a sample is 720 points: the sampling interval"
    assert parse(since=86400).step == 87, "a day: widened to stay within 1000 points"
    assert parse(step=2).step == 5, "never finer than the samples"
    assert parse(step=600).step == 600


def test_a_window_from_times_and_names_without_repeats() -> None:
    start = datetime(2027, 1, 15, 12, tzinfo=UTC)
    end = datetime(2027, 1, 15, 13, tzinfo=UTC)
    query = parse(start=start, end=end, names="memory_usage, cpu_usage,memory_usage")
    assert (query.start, query.end) == (start.timestamp(), end.timestamp())
    assert query.names == ("memory_usage", "cpu_usage")


@pytest.mark.parametrize(
    "given, message",
    [
        ({"since": 0}, "since"),
        ({"since": 60, "start": datetime(2027, 1, 1, tzinfo=UTC)}, "one of them"),
        ({"start": datetime(2100, 1, 1, tzinfo=UTC)}, "before end"),
        ({"step": 0}, "step"),
        ({"step": 86401}, "step"),
        ({"names": ","}, "names"),
        ({"names": ",".join(f"m{i}" for i in range(17))}, "names"),
    ],
)
def test_bad_queries_say_what_is_wrong(given: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(**given)


def test_each_metric_carries_its_own_status() -> None:
    query = parse(names="cpu_usage,gpu_utilization,nonsense")
    series = Series(run_id="run-1", timestamps=[NOW], values=[0.5], maxima=[0.9])
    doc = metrics_document(query, {"cpu_usage": [series]}, gpu_runs=False)
    cpu, gpu, nonsense = doc["metrics"]
    assert (cpu["status"], cpu["unit"], cpu["series"][0]["maxima"]) == ("ok", "cores", [0.9])
    assert (gpu["status"], gpu["series"]) == ("unavailable", [])
    assert (nonsense["status"], nonsense["series"]) == ("unknown", [])
    with_gpus = metrics_document(query, {}, gpu_runs=True)["metrics"][1]
    assert (with_gpus["status"], with_gpus["series"]) == ("ok", [])


def test_usage_keeps_peaks_and_the_kernels_cpu_count_and_survives_its_record() -> None:
    usage = RunUsage()
    usage = usage.updated(cpu_seconds=1.0, cpu=None, memory=100, seconds=2.0)
    usage = usage.updated(cpu_seconds=3.0, cpu=1.0, memory=50, seconds=4.0)
    assert (usage.cpu_seconds, usage.peak_cpu, usage.peak_memory_bytes) == (3.0, 1.0, 100)
    assert usage.average_cpu == 0.75
    assert RunUsage.from_record(usage.to_record()) == usage
    assert RunUsage.from_record(None) is None
    assert usage.to_api() == {
        "cpuSeconds": 3.0, "averageCpu": 0.75, "peakCpu": 1.0, "peakMemoryBytes": 100,
        "samples": 2,
    }  # fmt: skip
