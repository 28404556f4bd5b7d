"""The system service under a real systemd, as the README's "Running jobd as a service" says:
`jobd install --system`, readiness, `systemctl status`, the journal, jobctl as a member of
group jobd, a job kept across `systemctl restart jobd` and across a `kill -9` of jobd, a
second install that changes nothing, and uninstall keeping the data unless --purge.

The tests run in order on one machine: each starts from what the one before left."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from jobd import __version__
from tests.systemd.machine import USER, Machine, wait_for

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(600)]
IMAGE = "localhost/jobd/busybox:latest"  # jobd's embedded image, built on first use


# GET /metrics on the socket, as root (no curl in the machine)
METRICS = (
    "import socket, http.client as h\n"
    "c = h.HTTPConnection('localhost')\n"
    "c.sock = socket.socket(socket.AF_UNIX); c.sock.connect('/run/jobd/jobd.sock')\n"
    "c.request('GET', '/metrics'); print(c.getresponse().read().decode())"
)


def jobctl(machine: Machine, arguments: str, *, check: bool = True) -> str:
    return machine.sh(f"jobctl {arguments}", user=USER, check=check).stdout


def run_of(machine: Machine, run_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(jobctl(machine, f"show --json {run_id}"))
    return shown


def start_job(machine: Machine, script: str) -> str:
    """A job as the test user, running: its run's id."""
    _, run_id = jobctl(machine, f"run {IMAGE} -- sh -c '{script}'").split()
    wait_for(f"jobctl show --json {run_id} | grep -q '\"status\": \"running\"'", machine,
             timeout=30, user=USER)  # fmt: skip
    return run_id


def main_pid(machine: Machine) -> int:
    return int(machine.sh("systemctl show -p MainPID --value jobd").stdout)


def test_install_starts_a_ready_service(machine: Machine) -> None:
    said = machine.sh("jobd install --system").stdout.splitlines()
    assert said[:6] == [
        "group jobd: created",
        "directory /etc/jobd (root, 0755): created",
        "directory /var/lib/jobd (root, 0700): created",
        "unit /etc/systemd/system/jobd.service (ExecStart=/usr/local/bin/jobd --system): written",
        "systemctl daemon-reload: done",
        "systemctl enable --now jobd: done",
    ]
    # Type=notify: `systemctl start` (enable --now) returned only once jobd said READY=1
    assert machine.sh("systemctl is-active jobd").stdout.strip() == "active"
    assert machine.sh("systemctl is-enabled jobd").stdout.strip() == "enabled"
    shown = machine.sh("stat -c '%U:%G %a' /run/jobd/jobd.sock /var/lib/jobd").stdout
    assert shown.split("\n")[:2] == ["root:jobd 660", "root:root 700"]


def test_status_and_the_journal(machine: Machine) -> None:
    status = machine.sh("systemctl status jobd --no-pager", check=False).stdout
    assert "Active: active (running)" in status
    assert 'Status: "serving on /run/jobd/jobd.sock and http://127.0.0.1:8427"' in status
    entries = [
        json.loads(line)
        for line in machine.sh("journalctl -u jobd -o json --no-pager").stdout.splitlines()
    ]
    jobd = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "jobd"]
    by_message = {e["MESSAGE"]: e["PRIORITY"] for e in jobd}
    assert by_message[f"jobd: jobd {__version__} ready"] == "6"  # info
    # a warning is a warning in the journal, and no line carries a time of its own
    assert any(p == "4" for p in by_message.values())
    assert not any(m.startswith(("<", "20")) for m in by_message)


def test_a_member_of_group_jobd_runs_jobs_with_jobctl(machine: Machine) -> None:
    machine.sh(f"usermod -aG jobd {USER}")
    job_id, run_id = jobctl(machine, f"run --wait {IMAGE} -- id -u").split()
    assert jobctl(machine, f"logs {run_id}").strip() == "1000"  # the job runs as its owner
    assert run_of(machine, run_id)["status"] == "succeeded"
    assert job_id in jobctl(machine, "ls")


def test_a_job_keeps_running_across_systemctl_restart(machine: Machine) -> None:
    run_id = start_job(machine, "sleep 4; echo finished")
    before = main_pid(machine)
    machine.sh("systemctl restart jobd")
    assert machine.sh("systemctl is-active jobd").stdout.strip() == "active"
    assert main_pid(machine) != before
    assert f"adopted running container of {run_id}" in machine.journal()
    jobctl(machine, f"wait {run_id}")
    run = run_of(machine, run_id)
    assert (run["status"], run["exitCode"]) == ("succeeded", 0)
    assert jobctl(machine, f"logs {run_id}").strip() == "finished"


def test_kill_9_is_restarted_by_systemd_and_nothing_is_lost(machine: Machine) -> None:
    jobs_before = json.loads(jobctl(machine, "ls --json"))["jobs"]
    run_id = start_job(machine, "sleep 4; echo survived")
    killed = main_pid(machine)
    restarts = int(machine.sh("systemctl show -p NRestarts --value jobd").stdout)
    machine.sh(f"kill -9 {killed}")
    wait_for(
        f"[ $(systemctl show -p NRestarts --value jobd) -gt {restarts} ]"
        " && systemctl is-active -q jobd",
        machine,
        timeout=30,
    )
    assert main_pid(machine) != killed
    jobctl(machine, f"wait {run_id}")
    run = run_of(machine, run_id)
    assert (run["status"], run["exitCode"]) == ("succeeded", 0)
    assert jobctl(machine, f"logs {run_id}").strip() == "survived"
    jobs_after = json.loads(jobctl(machine, "ls --json"))["jobs"]
    assert {j["id"] for j in jobs_before} < {j["id"] for j in jobs_after}


def test_run_output_goes_to_the_journal_with_the_runs_fields(machine: Machine) -> None:
    """[log_stream] target = "journald": each line of a run's output is a journal entry of
    its own, with the run, its job, its owner and a priority by stream."""
    machine.sh("printf '[log_stream]\\ntarget = \"journald\"\\n' > /etc/jobd/jobd.toml")
    machine.sh("systemctl restart jobd")
    try:
        job_id, run_id = jobctl(
            machine, f"run --wait {IMAGE} -- sh -c 'echo to stdout; echo to stderr >&2'"
        ).split()
        wait_for(
            f"journalctl JOBD_RUN_ID={run_id} -o cat | grep -q 'to stderr'", machine, timeout=10
        )
        entries = [
            json.loads(line)
            for line in machine.sh(f"journalctl JOBD_RUN_ID={run_id} -o json").stdout.splitlines()
        ]
        by_message = {e["MESSAGE"]: e for e in entries}
        assert set(by_message) == {"to stdout", "to stderr"}
        assert by_message["to stdout"]["PRIORITY"] == "6"
        assert by_message["to stderr"]["PRIORITY"] == "3"
        for entry in entries:
            assert (entry["JOBD_JOB_ID"], entry["JOBD_OWNER"]) == (job_id, USER)
            assert entry["SYSLOG_IDENTIFIER"] == "jobd"
        metrics = machine.sh(f"/opt/jobd/bin/python -c {shlex.quote(METRICS)}").stdout
        assert 'jobd_log_stream_sent_lines_total{target="journald"} 2.0' in metrics
    finally:
        machine.sh("rm -f /etc/jobd/jobd.toml && systemctl restart jobd")


def test_a_second_install_changes_nothing(machine: Machine) -> None:
    pid = main_pid(machine)
    said = machine.sh("jobd install --system").stdout.splitlines()
    assert said[-3] == "everything is in place"
    assert all(line.endswith("already in place") for line in said[:-3])
    assert main_pid(machine) == pid


def test_an_install_from_a_changed_unit_updates_it_and_restarts_jobd(machine: Machine) -> None:
    run_id = start_job(machine, "sleep 4; echo updated")
    machine.sh("echo '# changed by hand' >> /etc/systemd/system/jobd.service")
    said = machine.sh("jobd install --system").stdout.splitlines()
    assert said[3:6] == [
        "unit /etc/systemd/system/jobd.service (ExecStart=/usr/local/bin/jobd --system): updated",
        "systemctl daemon-reload: done",
        "systemctl restart jobd: done",
    ]
    assert "# changed by hand" not in machine.sh("cat /etc/systemd/system/jobd.service").stdout
    jobctl(machine, f"wait {run_id}")
    assert run_of(machine, run_id)["status"] == "succeeded"


def test_uninstall_keeps_the_data_and_purge_deletes_it(machine: Machine) -> None:
    jobs = jobctl(machine, "ls --json")
    said = machine.sh("jobd uninstall").stdout
    assert "systemctl disable --now jobd: done" in said
    assert "kept /var/lib/jobd (jobs, runs, logs): `--purge` deletes it" in said
    assert machine.sh("systemctl is-active jobd", check=False).stdout.strip() == "inactive"
    assert machine.sh("test -e /etc/systemd/system/jobd.service", check=False).returncode == 1
    machine.sh("jobd install --system")  # back, with every job it had
    assert json.loads(jobctl(machine, "ls --json"))["jobs"] == json.loads(jobs)["jobs"]
    purged = machine.sh("jobd uninstall --purge").stdout
    assert "directory /var/lib/jobd (jobs, runs, logs, outputs): deleted" in purged
    assert "group jobd: deleted" in purged
    assert machine.sh("test -e /var/lib/jobd", check=False).returncode == 1
