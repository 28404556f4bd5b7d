"""Progress markers through the real daemon and podman: a job prints `::jobd phase` and
`::jobd progress n/total` lines, and its run shows the fraction, message, phase timeline and an
estimate while it runs and after it ends; malformed markers change nothing; a job printing
markers as fast as it can is written at most once a second; /metrics has the fraction."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.support import Daemon, container_state, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

# validating, then rendering 10 frames (a line each, 0.4 s apart, with junk between), then
# finalizing; stderr carries one marker to show either stream counts
RENDER = """
echo '::jobd phase validating'; sleep 1
echo '::jobd phase rendering'
for i in 1 2 3 4 5 6 7 8 9 10; do
  echo "::jobd progress $i/10 frame $i"; echo "ordinary output $i"; sleep 0.4
done
echo '::jobd phase finalizing' >&2; sleep 1
"""


def test_a_run_shows_its_progress_phases_and_estimate_while_it_runs_and_after(
    daemon: Daemon,
) -> None:
    run_id = daemon.submit(command=["sh", "-c", RENDER])["latestRunId"]

    def midway() -> dict[str, Any] | None:
        run = daemon.run(run_id)
        progress = run["progress"] or {}
        done = progress.get("done") or 0
        return run if 3 <= done < 10 and progress.get("etaSeconds") is not None else None

    run = wait_until(midway, 60, "the run to be part way through its frames, with an ETA")
    progress = run["progress"]
    assert run["status"] == "running"
    assert progress["total"] == 10 and progress["fraction"] == progress["done"] / 10
    assert progress["message"] == f"frame {progress['done']}"
    assert progress["phase"] == "rendering"
    # about 2.5 frames a second: the rest takes a few seconds, not the 30-day deadline
    assert 0 < progress["etaSeconds"] < 30, progress
    assert [p["name"] for p in run["phases"]] == ["validating", "rendering"]

    ended = daemon.wait_status(run_id, "succeeded", timeout=60)
    ended = wait_until(
        lambda: (r := daemon.run(run_id))["progress"]["phase"] == "finalizing" and r,
        10,
        "the last marker to be written",
    )
    progress = ended["progress"]
    assert (progress["fraction"], progress["done"], progress["total"]) == (1.0, 10, 10)
    assert progress["message"] == "frame 10" and progress["etaSeconds"] == 0
    phases = ended["phases"]
    assert [p["name"] for p in phases] == ["validating", "rendering", "finalizing"]
    validating, rendering, finalizing = (p["seconds"] for p in phases)
    assert 0.8 <= validating <= 3, phases
    assert 3.5 <= rendering <= 8, phases
    assert 0.8 <= finalizing <= 3, phases
    assert "::jobd progress 4/10 frame 4" in daemon.logs_text(run_id), "lines stay as printed"


BAD = """
echo '::jobd progress 3/10 good'; sleep 0.5
for line in '::jobd progress 1.5' '::jobd progress -0.1' '::jobd progress 11/10' \
  '::jobd progress 1/0' '::jobd progress nan' '::jobd progress' '::jobd phase' \
  '::jobd frobnicate 1' '::jobd progress abc/10' 'x ::jobd progress 0.9' \
  ' ::jobd progress 0.9' '::jobdprogress 0.9'; do
  echo "$line"
done
sleep 1.5
"""


def test_malformed_markers_change_nothing_and_are_counted(daemon: Daemon) -> None:
    before = _metric(daemon, "jobd_progress_markers_ignored_total")
    run_id = daemon.submit(command=["sh", "-c", BAD])["latestRunId"]
    ended = daemon.wait_status(run_id, "succeeded", timeout=60)
    ended = wait_until(lambda: daemon.run(run_id), 3, "the run")
    progress = ended["progress"]
    assert (progress["done"], progress["total"], progress["message"]) == (3, 10, "good")
    assert progress["phase"] is None and ended["phases"] == []
    ignored = wait_until(
        lambda: (n := _metric(daemon, "jobd_progress_markers_ignored_total")) - before >= 9 and n,
        5,
        "the ignored markers to be counted",
    )
    # the nine that start with the marker; the three that do not are ordinary output
    assert ignored - before == 9


FLOOD = """
i=0
while [ $i -lt 40000 ]; do echo "::jobd progress $i/40000"; i=$((i+1)); done
echo '::jobd progress 40000/40000 done'
sleep 1.5
"""


def test_a_flood_of_markers_is_written_at_most_once_a_second(daemon: Daemon) -> None:
    before = _metric(daemon, "jobd_progress_writes_total")
    run_id = daemon.submit(command=["sh", "-c", FLOOD])["latestRunId"]
    ended = daemon.wait_status(run_id, "succeeded", timeout=120)
    wait_until(lambda: daemon.run(run_id)["progress"]["message"] == "done", 5, "the last marker")
    seconds = ended["runningSeconds"]
    writes = _metric(daemon, "jobd_progress_writes_total") - before
    assert 1 <= writes <= seconds + 2, (writes, seconds)


def test_metrics_show_each_running_runs_progress(daemon: Daemon) -> None:
    script = "echo '::jobd progress 0.25 a quarter'; sleep 30"
    run_id = daemon.submit(command=["sh", "-c", script])["latestRunId"]
    line = "jobd_run_progress_ratio{"
    found = wait_until(
        lambda: [
            row
            for row in daemon.get("/metrics").text.splitlines()
            if row.startswith(line) and run_id in row
        ],
        30,
        "the run's progress in /metrics",
    )
    assert found[0].endswith(" 0.25"), found
    daemon.post(f"/v1/runs/{run_id}/cancel", {"force": True})
    daemon.wait_status(run_id, "cancelled", timeout=30)


def _metric(daemon: Daemon, name: str) -> float:
    for row in daemon.get("/metrics").text.splitlines():
        if row.startswith(name + " "):
            return float(row.split()[-1])
    return 0.0


ACROSS = """
echo '::jobd phase one'; echo '::jobd progress 1/4'; sleep 2
echo '::jobd phase two'; echo '::jobd progress 2/4'; sleep 2
echo '::jobd phase three'; echo '::jobd progress 4/4 all done'
"""


def test_markers_survive_a_kill_of_the_daemon_and_those_printed_while_it_was_down(
    daemon: Daemon,
) -> None:
    run_id = daemon.submit(command=["sh", "-c", ACROSS])["latestRunId"]
    wait_until(
        lambda: (daemon.run(run_id)["progress"] or {}).get("phase") == "one", 30, "phase one"
    )
    daemon.kill()
    wait_until(lambda: container_state(run_id) == "exited", 30, "the container to exit")
    daemon.start()
    daemon.wait_status(run_id, "succeeded", timeout=60)
    run = wait_until(
        lambda: (r := daemon.run(run_id))["progress"]["message"] == "all done" and r,
        10,
        "the markers printed while jobd was down",
    )
    assert [p["name"] for p in run["phases"]] == ["one", "two", "three"]
    assert run["progress"]["fraction"] == 1.0


def test_markers_can_be_turned_off(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(config="[logs]\nprogress_markers = false\n")
    run_id = daemon.submit(command=["sh", "-c", "echo '::jobd progress 0.5 half'"])["latestRunId"]
    daemon.wait_status(run_id, "succeeded", timeout=60)
    time.sleep(1.5)  # past the progress book's next write
    assert daemon.run(run_id)["progress"] is None
    assert daemon.logs_text(run_id) == "::jobd progress 0.5 half\n", "the line is output as ever"
