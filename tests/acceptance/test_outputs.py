"""Results out, through the real daemon and podman: what a run writes to /outputs is kept after
its container is gone, listed with checksums, downloaded intact (one file, a range, all of
them), never through a symlink; a runaway writer is killed at its limit and the disk stays
usable; deleting the job deletes them."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from tests.support import TEST_IMAGE, Daemon, removed_soon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

WRITE = (
    "mkdir -p /outputs/frames; for i in 1 2 3; do seq $i 1000 > /outputs/frames/f$i.png; done;"
    " echo report > /outputs/report.txt; ln -s /etc/hostname /outputs/link;"
    " ln -s / /outputs/frames/root; seq 1 100000 > /outputs/numbers.txt"
)


def expected(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def seq(first: int, last: int) -> str:
    return "".join(f"{n}\n" for n in range(first, last + 1))


@pytest.fixture
def finished(daemon: Daemon) -> str:
    job = daemon.submit(command=["sh", "-c", WRITE])
    run = daemon.wait_status(job["latestRunId"])
    assert run["status"] == "succeeded", daemon.logs_text(run["id"])
    assert removed_soon(run["id"]), "outputs are kept without the container"
    return str(run["id"])


def test_outputs_are_kept_listed_with_checksums_and_a_preview(
    daemon: Daemon, finished: str
) -> None:
    listing = daemon.get(f"/v1/runs/{finished}/outputs").body
    files = {f["path"]: f for f in listing["files"]}
    assert sorted(files) == [
        "frames/f1.png", "frames/f2.png", "frames/f3.png", "numbers.txt", "report.txt"
    ], "regular files only: the symlinks are not outputs"  # fmt: skip
    assert files["report.txt"]["sha256"] == expected("report\n")
    assert files["numbers.txt"]["sizeBytes"] == len(seq(1, 100000))
    assert files["frames/f2.png"]["sha256"] == expected(seq(2, 1000))
    summary = daemon.run(finished)["output"]
    assert (summary["files"], summary["kept"]) == (5, True)
    assert summary["bytes"] == sum(f["sizeBytes"] for f in files.values())
    preview = daemon.get(summary["previewUrl"])
    assert summary["previewUrl"].startswith(f"/v1/runs/{finished}/outputs/frames/f")
    assert preview.status == 200
    shown = daemon.jobctl("outputs", finished).stdout
    assert "numbers.txt" in shown and "5 files" in shown


def test_outputs_download_intact_with_jobctl(daemon: Daemon, finished: str, tmp_path: Path) -> None:
    everything = daemon.jobctl("outputs", finished, "-o", str(tmp_path / "all"))
    assert everything.returncode == 0, everything.stderr
    assert (tmp_path / "all" / "numbers.txt").read_text() == seq(1, 100000)
    assert (tmp_path / "all" / "frames" / "f3.png").read_text() == seq(3, 1000)
    assert not (tmp_path / "all" / "link").exists()
    some = daemon.jobctl(
        "outputs", finished, "frames/f1.png", "report.txt", "-o", str(tmp_path / "some")
    )
    assert some.returncode == 0, some.stderr
    assert sorted(p.name for p in (tmp_path / "some").rglob("*") if p.is_file()) == [
        "f1.png", "report.txt"
    ]  # fmt: skip


def test_a_range_an_archive_and_no_way_out(daemon: Daemon, finished: str) -> None:
    url = f"/v1/runs/{finished}/outputs"
    ranged = subprocess.run(
        ["curl", "-s", "-i", "-H", "Range: bytes=2-4", "--unix-socket", str(daemon.socket),
         f"http://jobd{url}/report.txt"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert ranged.stdout.startswith("HTTP/1.1 206") and ranged.stdout.endswith("por")
    archive = subprocess.run(
        ["curl", "-s", "--unix-socket", str(daemon.socket), f"http://jobd{url}?archive=tar"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        assert names[-1] == "report.txt" and len(names) == 5
        assert tar.extractfile("numbers.txt").read().decode() == seq(1, 100000)  # type: ignore[union-attr]
    for path, status in [
        ("link", 404), ("frames/root/etc/hostname", 404), ("..%2Fjobd.db", 400), ("frames", 404)
    ]:  # fmt: skip
        assert daemon.get(f"{url}/{path}").status == status, path


def test_a_runaway_writer_is_killed_at_its_limit_and_the_disk_stays_usable(
    daemon: Daemon,
) -> None:
    runaway = daemon.jobctl(
        "run", "--wait", "--network", "none", "--output-limit", "50MB", TEST_IMAGE, "--",
        "sh", "-c", "dd if=/dev/zero of=/outputs/fill bs=1M count=100000",
    )  # fmt: skip
    run = daemon.run(runaway.stdout.split()[1])
    assert run["failureReason"]["type"] == "output_limit", run
    assert run["failureReason"]["category"] == "application"
    assert "grew past their limit of 47.7 MiB" in run["failureReason"]["message"]
    assert run["retriedBy"] is None
    kept = daemon.data_dir / "outputs" / run["id"] / "fill"
    wait_until(lambda: daemon.run(run["id"])["output"], 10, "the outputs to be counted")
    assert kept.stat().st_size < 50_000_000 + 500 * 2**20, "killed within a moment of its limit"
    after = daemon.jobctl("run", "--wait", "--network", "none", TEST_IMAGE, "--", "echo", "fine")
    assert after.returncode == 0, "jobd and the next job go on"


def test_outputs_count_in_the_footprint_and_go_with_their_job(
    daemon: Daemon, finished: str
) -> None:
    outputs = daemon.data_dir / "outputs" / finished
    assert outputs.is_dir()
    kept = daemon.run(finished)["output"]["bytes"]
    assert kept > 0

    def counted() -> dict[str, int] | None:  # the walk may be up to 2 s old: the next one
        found: dict[str, int] = daemon.get("/v1/node").body["dataDir"]
        return found if found["outputsBytes"] >= kept else None

    footprint = wait_until(counted, 10, "the footprint to count the outputs")
    assert footprint["totalBytes"] >= footprint["outputsBytes"] + footprint["databaseBytes"]
    job_id = daemon.run(finished)["jobId"]
    assert daemon.jobctl("delete", job_id, "--wait").returncode == 0
    assert not outputs.exists()
    assert not (daemon.data_dir / "outputs" / f"{finished}.manifest.json").exists()
