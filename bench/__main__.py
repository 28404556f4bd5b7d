"""`python -m bench`: run the scenarios, print one table, write it as Markdown and JSON."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
import psutil

from bench.report import Report
from bench.scenarios import (
    completion,
    data,
    dispatch,
    logs,
    observe,
    scheduler,
    store,
    submit,
    workflows,
)

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = (
    "submit", "dispatch", "completion", "store", "logs", "scheduler", "data", "observe", "workflows"
)  # fmt: skip


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--scenarios",
    default=",".join(SCENARIOS),
    show_default=True,
    help="Comma-separated subset to run.",
)
@click.option(
    "--repeats",
    default=2,
    show_default=True,
    help="Each scenario's runs (a repeat takes about 12 minutes on 2 cores).",
)
@click.option("--submit-n", default=10_000, show_default=True, help="Jobs per API submit run.")
@click.option("--clients", default="1,8,64", show_default=True)
@click.option("--jobctl-n", default=300, show_default=True, help="Jobs submitted via jobctl.")
@click.option(
    "--peer-n",
    default=900,
    show_default=True,
    help="Jobs per peer submit run (task-spooler queues at most ~990).",
)
@click.option("--store-n", default=100_000, show_default=True, help="Finished runs in the store.")
@click.option(
    "--store-requests", default=300, show_default=True, help="Requests per store list query."
)
@click.option(
    "--dispatch-samples",
    default=20,
    show_default=True,
    help="Dispatch-latency samples per system per repeat.",
)
@click.option(
    "--completion-n", default=200, show_default=True, help="Container jobs per completion run."
)
@click.option(
    "--completion-parallelism",
    default=2,
    show_default=True,
    help="Containers at once in the completion runs (tsp slots; jobd plan cpus = CPUs / P).",
)
@click.option(
    "--logs-bytes", default=1_000_000_000, show_default=True, help="Output of the big-log job."
)
@click.option(
    "--follow-lines", default=200, show_default=True, help="Lines of the followed log job."
)
@click.option(
    "--queued-n", default=10_000, show_default=True, help="Runs queued while passes are timed."
)
@click.option(
    "--data-bytes", default=1_000_000_000, show_default=True, help="File uploaded and downloaded."
)
@click.option("--outputs-n", default=10_000, show_default=True, help="Output files listed.")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def main(
    scenarios: str,
    repeats: int,
    submit_n: int,
    clients: str,
    jobctl_n: int,
    peer_n: int,
    store_n: int,
    store_requests: int,
    dispatch_samples: int,
    completion_n: int,
    completion_parallelism: int,
    logs_bytes: int,
    follow_lines: int,
    queued_n: int,
    data_bytes: int,
    outputs_n: int,
    out: Path,
) -> None:
    """jobd against raw podman, the podman API, Slurm and task-spooler, side by side."""
    chosen = [s for s in scenarios.split(",") if s]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise click.BadParameter(f"unknown scenarios: {', '.join(sorted(unknown))}")
    report = Report(
        parameters={
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total // 2**30} GiB,"
            f" {platform.platform()}",
            "repeats": repeats,
            "submitN": submit_n,
            "clients": clients,
            "jobctlN": jobctl_n,
            "peerN": peer_n,
            "storeN": store_n,
            "storeRequests": store_requests,
            "dispatchSamples": dispatch_samples,
            "completionN": completion_n,
            "completionParallelism": completion_parallelism,
            "logsBytes": logs_bytes,
            "followLines": follow_lines,
            "queuedN": queued_n,
            "dataBytes": data_bytes,
            "outputsN": outputs_n,
        }
    )
    # each scenario, with the parameters it takes; run in the order of SCENARIOS
    runners: dict[str, Callable[[], None]] = {
        "submit": lambda: submit.run(
            report,
            n=submit_n,
            clients=_ints(clients),
            repeats=repeats,
            jobctl_n=jobctl_n,
            peer_n=peer_n,
        ),
        "dispatch": lambda: dispatch.run(report, samples=dispatch_samples, repeats=repeats),
        "completion": lambda: completion.run(
            report, n=completion_n, parallelism=completion_parallelism, repeats=repeats
        ),
        "store": lambda: store.run(report, n=store_n, requests=store_requests, repeats=repeats),
        "logs": lambda: logs.run(
            report, size=logs_bytes, follow_lines=follow_lines, repeats=repeats
        ),
        "scheduler": lambda: scheduler.run(report, queued=queued_n, repeats=repeats),
        "data": lambda: data.run(
            report, size=data_bytes, files=outputs_n, listings=20, repeats=repeats
        ),
        "observe": lambda: observe.run(
            report, n=store_n, queued=queued_n, requests=store_requests, repeats=repeats
        ),
        "workflows": lambda: workflows.run(report, queued=queued_n, repeats=repeats),
    }
    for name in SCENARIOS:
        if name not in chosen:
            continue
        runner = runners.get(name)
        if runner is None:
            report.missing(name, "jobd", "this scenario is not written yet (issue 3)")
        else:
            runner()
    markdown, table = report.write(out)
    click.echo(report.markdown())
    click.echo(f"written: {markdown} and {table}")


if __name__ == "__main__":
    main()
