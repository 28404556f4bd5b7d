"""GPU scheduling and passthrough (issue 5), through the real daemon and podman, with fake GPUs:
char device nodes made with mknod, a CDI spec mapping them (podman 4.3 reads /etc/cdi and
/var/run/cdi only), and the GPU inventory supplied as a file in NVML's shapes (there is no
NVML here). Each test has its own CDI kind, so specs never collide."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.support import TEST_IMAGE, Daemon, wait_until

pytestmark = [
    pytest.mark.podman,
    pytest.mark.acceptance,
    pytest.mark.skipif(os.getuid() != 0, reason="mknod and /var/run/cdi need root"),
]

GB = 1000**3
CDI_DIR = Path("/var/run/cdi")
PLANS = """
[plans.gpu-test]
cpus = 0.25
memory_mb = 256
gpus = 1

[plans.vram10]
cpus = 0.25
memory_mb = 256
gpus = 1
min_vram_gb = 10
gpu_share = true
"""


@dataclass
class FakeGpus:
    kind: str
    inventory: Path
    spec: Path
    nodes: list[Path]
    gpus: list[dict[str, Any]]

    def uuid(self, index: int) -> str:
        return str(self.gpus[index]["uuid"])

    def container_node(self, index: int) -> str:
        return f"/dev/{self.kind.split('/')[1]}-{index}"

    def write_inventory(self, processes: dict[int, list[dict[str, int]]] | None = None) -> None:
        gpus = [{**g, "processes": (processes or {}).get(int(g["index"]), [])} for g in self.gpus]
        tmp = self.inventory.with_suffix(".tmp")
        tmp.write_text(json.dumps({"driverVersion": "550.54.15", "gpus": gpus}))
        tmp.replace(self.inventory)  # jobd re-reads it: never a half-written file

    def config(self) -> str:
        return f'[gpus]\ninventory_file = "{self.inventory}"\ncdi_kind = "{self.kind}"\n' + PLANS


@pytest.fixture
def fake_gpus(tmp_path: Path) -> Iterator[Any]:
    made: list[FakeGpus] = []

    def make(count: int, *, memory_gb: int = 24, without_cdi: tuple[int, ...] = ()) -> FakeGpus:
        token = secrets.token_hex(3)
        kind = f"jobd.test/gpu{token}"
        directory = tmp_path / f"gpus-{token}"
        directory.mkdir()
        nodes = []
        for index in range(count):
            node = directory / f"gpu{index}"
            subprocess.run(["mknod", str(node), "c", "195", str(index)], check=True)
            nodes.append(node)
        gpus = [
            {
                "index": str(index),
                "uuid": f"GPU-{token}-{index:04d}",
                "name": "NVIDIA L4",
                "memoryTotalBytes": memory_gb * GB,
                "memoryFreeBytes": memory_gb * GB,
                "utilizationPercent": 0,
            }
            for index in range(count)
        ]
        fake = FakeGpus(kind, directory / "gpus.json", CDI_DIR / f"{token}.json", nodes, gpus)
        devices = [
            {
                "name": fake.uuid(index),
                "containerEdits": {
                    "deviceNodes": [
                        {"path": fake.container_node(index), "hostPath": str(nodes[index])}
                    ]
                },
            }
            for index in range(count)
            if index not in without_cdi
        ]
        CDI_DIR.mkdir(parents=True, exist_ok=True)
        fake.spec.write_text(json.dumps({"cdiVersion": "0.5.0", "kind": kind, "devices": devices}))
        fake.write_inventory()
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.spec.unlink(missing_ok=True)


def node(daemon: Daemon) -> dict[str, Any]:
    response = daemon.get("/v1/node")
    assert response.status == 200, response.text
    return response.body  # type: ignore[no-any-return]


def gpu_states(daemon: Daemon) -> dict[str, str]:
    return {g["index"]: g["state"] for g in node(daemon)["gpus"]}


def test_a_run_given_gpu_1_sees_exactly_its_device(
    daemon_factory: DaemonFactory, fake_gpus: Any
) -> None:
    gpus = fake_gpus(2)
    gpus.write_inventory({0: [{"pid": 999999, "usedMemoryBytes": 4 * GB}]})  # a notebook
    daemon = daemon_factory(config=gpus.config())
    assert gpu_states(daemon) == {"0": "busy", "1": "free"}
    job = daemon.submit(
        plan="gpu-test",
        startCommand="ls /dev; echo CUDA=$CUDA_VISIBLE_DEVICES NV=$NVIDIA_VISIBLE_DEVICES;"
        " sleep 30",
    )
    run_id = job["latestRunId"]
    run = daemon.wait_status(run_id, {"running"})
    assert [g["uuid"] for g in run["allocation"]["gpus"]] == [gpus.uuid(1)]
    assert run["finalConfig"]["allocation"]["gpus"][0]["uuid"] == gpus.uuid(1)
    wait_until(lambda: "CUDA=" in daemon.logs_text(run_id), 10, "its output")
    out = daemon.logs_text(run_id)
    devices = [line for line in out.splitlines() if line.startswith("gpu")]
    assert devices == [gpus.container_node(1).removeprefix("/dev/")]
    assert f"CUDA={gpus.uuid(1)} NV={gpus.uuid(1)}" in out

    # jobctl node: GPU 0 busy with someone else's 4 GB, GPU 1 this run's
    seen = node(daemon)
    by_index = {g["index"]: g for g in seen["gpus"]}
    assert by_index["0"]["foreignPids"] == [999999]
    assert by_index["0"]["foreignMemoryBytes"] == 4 * GB
    assert by_index["1"]["state"] == "exclusive"
    assert by_index["1"]["allocatedTo"][0]["runId"] == run_id
    shown = daemon.jobctl("node")
    assert shown.returncode == 0, shown.stderr
    assert "busy" in shown.stdout and run_id in shown.stdout and "999999" in shown.stdout

    # its process allocates 5 GB: that is its use, not someone else's; the peak is kept
    pid = int(
        subprocess.run(
            ["podman", "inspect", "--format", "{{.State.Pid}}", run_id],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    gpus.write_inventory(
        {
            0: [{"pid": 999999, "usedMemoryBytes": 4 * GB}],
            1: [{"pid": pid, "usedMemoryBytes": 5 * GB}],
        }
    )
    wait_until(
        lambda: (daemon.run(run_id).get("gpuUsage") or {}).get("peakMemoryBytes") == 5 * GB,
        15,
        "the run's peak GPU memory",
    )
    holder = {g["index"]: g for g in node(daemon)["gpus"]}["1"]["allocatedTo"][0]
    assert holder["usedBytes"] == 5 * GB
    daemon.post(f"/v1/runs/{run_id}/cancel")
    ended = daemon.wait_status(run_id)
    usage = ended["gpuUsage"]
    assert usage["gpuSeconds"] == pytest.approx(ended["runningSeconds"], abs=0.01)
    assert usage["normalizedSeconds"] == usage["gpuSeconds"]  # performance factor 1


def test_two_exclusive_runs_share_two_gpus_and_a_third_waits_for_one(
    daemon_factory: DaemonFactory, fake_gpus: Any
) -> None:
    gpus = fake_gpus(2)
    daemon = daemon_factory(config=gpus.config())
    short = daemon.submit(plan="gpu-test", startCommand="sleep 4")["latestRunId"]
    long = daemon.submit(plan="gpu-test", startCommand="sleep 60")["latestRunId"]
    daemon.wait_status(short, {"running"})
    daemon.wait_status(long, {"running"})
    third = daemon.submit(plan="gpu-test", startCommand="sleep 1")["latestRunId"]
    doomed = daemon.submit(plan="gpu-test", command=["true"], maxPendingSeconds=1)["latestRunId"]
    wait_until(
        lambda: daemon.run(third).get("queue", {}).get("reason") == "waiting for 1 GPU",
        10,
        "the third run's reason to wait",
    )
    assert daemon.run(third)["queue"]["position"] == 1
    assert gpu_states(daemon) == {"0": "exclusive", "1": "exclusive"}
    shown = daemon.jobctl("show", third)
    assert "position 1: waiting for 1 GPU" in shown.stdout, shown.stdout

    failed = daemon.wait_status(doomed, timeout=15)
    assert failed["status"] == "failed"
    assert failed["failureReason"]["type"] == "unschedulable"
    assert "waiting for 1 GPU" in failed["failureReason"]["message"]

    freed = daemon.run(short)["allocation"]["gpus"][0]["uuid"]
    daemon.wait_status(short, timeout=30)
    started = daemon.wait_status(third, {"running", "succeeded"}, timeout=20)
    assert started["allocation"]["gpus"][0]["uuid"] == freed
    assert daemon.wait_status(third)["status"] == "succeeded"


def test_shared_gpus_pack_by_memory_without_exceeding_it(
    daemon_factory: DaemonFactory, fake_gpus: Any
) -> None:
    gpus = fake_gpus(1, memory_gb=24)
    daemon = daemon_factory(config=gpus.config())
    first, second, third = (
        daemon.submit(plan="vram10", startCommand="sleep 60")["latestRunId"] for _ in range(3)
    )
    daemon.wait_status(first, {"running"})
    daemon.wait_status(second, {"running"})
    wait_until(
        lambda: (
            daemon.run(third).get("queue", {}).get("reason")
            == "waiting for 1 GPU with 9.3 GiB free (shared)"  # 10 GB, in the units of tables
        ),
        10,
        "the third run to wait for GPU memory",
    )
    (seen,) = node(daemon)["gpus"]
    assert seen["state"] == "shared" and seen["availableBytes"] == 4 * GB
    assert {h["runId"] for h in seen["allocatedTo"]} == {first, second}
    daemon.post(f"/v1/runs/{first}/cancel")
    daemon.wait_status(third, {"running"}, timeout=30)


def test_a_gpu_without_a_cdi_device_fails_gpu_unavailable_and_never_runs(
    daemon_factory: DaemonFactory, fake_gpus: Any
) -> None:
    gpus = fake_gpus(1, without_cdi=(0,))
    daemon = daemon_factory(config=gpus.config())
    run_id = daemon.submit(plan="gpu-test", command=["echo", "ran on the CPU"])["latestRunId"]
    run = daemon.wait_status(run_id, timeout=30)
    assert run["status"] == "failed"
    assert run["failureReason"]["type"] == "gpu_unavailable"
    assert run["failureReason"]["category"] == "infrastructure"
    assert gpus.uuid(0) in run["failureReason"]["message"]
    assert "ran on the CPU" not in daemon.logs_text(run_id)
    doctor = daemon.jobctl("doctor")
    assert doctor.returncode == 1
    assert "cdi-devices" in doctor.stdout and "FAIL" in doctor.stdout


def test_a_gpu_runs_metrics_follow_its_gpu(daemon_factory: DaemonFactory, fake_gpus: Any) -> None:
    gpus = fake_gpus(2)
    notebook = {0: [{"pid": 999999, "usedMemoryBytes": 4 * GB}]}  # GPU 0 is someone else's
    gpus.write_inventory(notebook)
    daemon = daemon_factory(config=gpus.config() + "[metrics]\nsample_seconds = 1\n")
    job = daemon.submit(plan="gpu-test", command=["sleep", "30"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    # the run at work on GPU 1: 37% busy, 3 GB in use by processes NVML does not list
    gpus.gpus[1] = {**gpus.gpus[1], "utilizationPercent": 37, "memoryFreeBytes": 21 * GB}
    gpus.write_inventory(notebook)

    def sampled() -> dict[str, Any] | None:
        doc = daemon.get(f"/v1/runs/{run_id}/metrics?names=gpu_utilization,gpu_memory_usage")
        assert doc.status == 200, doc.text
        utilization, memory = (m["series"] for m in doc.body["metrics"])
        seen = utilization and memory and utilization[0]["values"][-1] == 0.37
        return doc.body if seen and memory[0]["values"][-1] == 3 * GB else None

    doc = wait_until(sampled, 15, "GPU samples of the run at work")
    utilization, memory = doc["metrics"]
    assert (utilization["status"], utilization["unit"]) == ("ok", "ratio")
    (series,) = utilization["series"]
    assert series["labels"] == {"gpu": "1"}, "the run's own GPU"
    assert max(memory["series"][0]["maxima"]) == 3 * GB, "its GPU's memory, not GPU 0's 4 GB"

    scraped = daemon.get("/metrics").text  # the Unix socket: its peer is who it says
    gauges = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in scraped.splitlines()
        if line.startswith("jobd_gpu_") and 'gpu="1"' in line
    }
    labels = f'{{gpu="1",model="NVIDIA L4",uuid="{gpus.uuid(1)}"}}'  # sorted
    assert gauges[f"jobd_gpu_utilization_ratio{labels}"] == 0.37
    assert gauges[f"jobd_gpu_memory_used_bytes{labels}"] == 3 * GB
    assert gauges[f"jobd_gpu_runs{labels}"] == 1
    daemon.post(f"/v1/runs/{run_id}/cancel")


def test_requests_the_node_can_never_satisfy_are_refused_at_creation(
    daemon_factory: DaemonFactory, fake_gpus: Any
) -> None:
    gpus = fake_gpus(2)
    daemon = daemon_factory(config=gpus.config())
    response = daemon.post(
        "/v1/jobs", {"image": "busybox", "resources": {"gpuCount": 3, "cpuCount": 1}}
    )
    assert response.status == 422, response.text
    assert response.body["error"]["message"] == (
        "this machine has too little for its resources, so it could never run:"
        " 3 GPUs (it has 2 GPUs)"
    )
    both = daemon.post(
        "/v1/jobs", {"image": "busybox", "plan": "gpu-test", "resources": {"gpuCount": 1}}
    )
    assert both.status == 400, both.text
    assert daemon.get("/v1/jobs").body["jobs"] == []  # nothing was created

    ran = daemon.jobctl(
        *("run", "--gpus", "1", "--vram-gb", "10", "--gpu-share", "--cpus", "1"),
        *("--ram-gb", "0.5", "--network", "none", "--json", TEST_IMAGE, "true"),
    )
    assert ran.returncode == 0, ran.stderr
    job = json.loads(ran.stdout)
    assert daemon.wait_status(job["latestRunId"])["status"] == "succeeded"
    granted = job["resources"]
    assert granted == {
        "gpuCount": 1,
        "minVramGb": 10,
        "gpuShare": True,
        "cpuCount": 1,
        "minRamGb": 0.5,
    }


def test_doctor_checks_the_gpu_path(daemon_factory: DaemonFactory, fake_gpus: Any) -> None:
    gpus = fake_gpus(2)
    daemon = daemon_factory(config=gpus.config())
    doctor = daemon.jobctl("doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout
    levels = {c["name"]: c["level"] for c in json.loads(doctor.stdout)["checks"]}
    assert levels["gpus"] == levels["cdi-specs"] == levels["cdi-devices"] == "ok"
    assert levels["device-nodes"] == "ok"
    spec = json.loads(gpus.spec.read_text())
    gpus.spec.write_text(json.dumps({**spec, "cdiVersion": "0.6.0"}))  # podman 4.3 ignores it
    doctor = daemon.jobctl("doctor")
    assert doctor.returncode == 1
    assert "0.6.0" in doctor.stdout and "ignores" in doctor.stdout
