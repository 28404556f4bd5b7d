"""Progress in jobctl, through the real daemon and podman: a job prints `::jobd progress i/N`
lines; `jobctl wait` on a terminal draws a bar with its phase, message, percentage and time
left, and clears it at the end; piped, nothing of it; `run --follow` on a terminal keeps the
bar below the log's lines and piped prints the log alone; `jobctl ls` and `jobctl show` show
the fraction and the phase; waiting for an array job shows its indices done of total."""

from __future__ import annotations

import json
import re

import pytest

from tests.acceptance.test_waiting import Terminal
from tests.support import TEST_IMAGE, Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

CLEAR = "\r\x1b[2K"
# about 4.5 s of frames, a marker and an ordinary line each
FRAMES = """
echo '::jobd phase rendering'
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
  echo "::jobd progress $i/15 frame $i"; echo "ordinary output $i"; sleep 0.3
done
"""
BAR = re.compile(r"\[[█▏▎▍▌▋▊▉ ]{20}\] \d+% · rendering")


def test_wait_on_a_terminal_draws_the_bar_and_clears_it(daemon: Daemon) -> None:
    run_id = daemon.submit(command=["sh", "-c", FRAMES])["latestRunId"]
    terminal = Terminal(daemon, "wait", run_id)
    screen = terminal.read(40)
    assert terminal.close() == 0, screen
    assert BAR.search(screen), screen
    assert re.search(r"% · rendering · frame \d+ · ETA \d+s · \d+s", screen), screen
    assert screen.startswith(CLEAR + f"{run_id} ") and screen.endswith(CLEAR), screen
    assert "\n" not in screen, "one line, drawn over itself"


def test_piped_wait_and_follow_print_nothing_extra(daemon: Daemon) -> None:
    run_id = daemon.submit(command=["sh", "-c", FRAMES])["latestRunId"]
    piped = daemon.jobctl("wait", run_id, timeout=40)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "", "")
    followed = daemon.jobctl(
        "run", "--follow", "--network", "none", TEST_IMAGE, "--", "sh", "-c", FRAMES, timeout=40
    )
    assert followed.returncode == 0, followed.stderr
    expected = "".join(
        f"::jobd progress {i}/15 frame {i}\nordinary output {i}\n" for i in range(1, 16)
    )
    assert followed.stdout == "::jobd phase rendering\n" + expected
    assert re.fullmatch(r"job-\S+ run-\S+\n", followed.stderr), followed.stderr


def test_follow_on_a_terminal_keeps_the_bar_below_the_logs_lines(daemon: Daemon) -> None:
    terminal = Terminal(
        daemon, "run", "--follow", "--network", "none", TEST_IMAGE, "--", "sh", "-c", FRAMES
    )
    screen = terminal.read(40)
    assert terminal.close() == 0, screen
    assert BAR.search(screen), screen
    lines = screen.split("\r\n")
    # each of the log's lines is written on a line of its own, the bar cleared off it first
    shown = [line.rsplit(CLEAR, 1)[-1] for line in lines if "ordinary output" in line]
    assert shown == [f"ordinary output {i}" for i in range(1, 16)], lines
    assert screen.endswith(CLEAR), "the bar is gone at the end"


def test_ls_and_show_have_the_fraction_and_the_phase(daemon: Daemon) -> None:
    script = "echo '::jobd phase rendering'; echo '::jobd progress 3/10 frame 3'; sleep 30"
    job = daemon.submit(name="render", command=["sh", "-c", script])
    run_id = job["latestRunId"]
    wait_until(lambda: (daemon.run(run_id)["progress"] or {}).get("done") == 3, 30, "progress")
    listed = daemon.jobctl("ls")
    row = next(line for line in listed.stdout.splitlines() if job["id"] in line)
    assert "running 30% rendering" in row, listed.stdout
    shown = daemon.jobctl("show", run_id).stdout
    lines = {
        k.strip(): v.strip() for k, _, v in (line.partition(":") for line in shown.split("\n"))
    }
    assert lines["progress"] == "30% (3/10)", shown
    assert (lines["phase"], lines["message"]) == ("rendering", "frame 3"), shown
    assert re.fullmatch(r"rendering \d+s", lines["phases"]), shown
    of_job = daemon.jobctl("show", "render").stdout
    assert "30% (3/10) · rendering · frame 3" in of_job, of_job
    as_json = json.loads(daemon.jobctl("show", "--json", run_id).stdout)
    assert as_json["progress"]["fraction"] == 0.3 and as_json["phases"][0]["name"] == "rendering"
    daemon.post(f"/v1/runs/{run_id}/cancel", {"force": True})
    daemon.wait_status(run_id, {"cancelled"}, timeout=30)


def test_waiting_for_an_array_shows_indices_done_of_total(daemon: Daemon) -> None:
    job = daemon.submit(
        name="shards", array={"indices": "0-5", "parallelism": 2}, command=["sleep", "1"]
    )
    terminal = Terminal(daemon, "wait", job["id"])
    screen = terminal.read(50)
    assert terminal.close() == 0, screen
    assert re.search(r"shards [1-5]/6 done, [0-2] running \[[█▏▎▍▌▋▊▉ ]{20}\] \d+%", screen), screen
    assert screen.endswith(CLEAR), screen
