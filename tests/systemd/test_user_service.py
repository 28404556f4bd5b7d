"""A user's own jobd under their systemd (user@UID, kept running by lingering), as the
README says: `jobd install --user` as that user, `systemctl --user`, a job on rootless podman,
the user's own port, a second install that changes nothing, and a user without subordinate
ids told how to get them before anything is changed."""

from __future__ import annotations

import json

import pytest

from tests.systemd.machine import USER, USER_UID, Machine

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(600)]
IMAGE = "localhost/jobd/busybox:latest"


def test_install_as_the_user_starts_their_own_service(machine: Machine) -> None:
    said = machine.sh("jobd install --user", user=USER).stdout.splitlines()
    assert said[:4] == [
        f"directory /home/{USER}/.local/share/jobd ({USER}, 0700): created",
        f"unit /home/{USER}/.config/systemd/user/jobd.service"
        " (ExecStart=/usr/local/bin/jobd): written",
        "systemctl --user daemon-reload: done",
        "systemctl --user enable --now jobd: done",
    ]
    assert machine.sh("systemctl --user is-active jobd", user=USER).stdout.strip() == "active"
    status = machine.sh("systemctl --user status jobd --no-pager", user=USER, check=False).stdout
    port = 10000 + USER_UID % 22000  # the user's own port: 8427 is the system daemon's
    assert f"/run/user/{USER_UID}/jobd/jobd.sock and http://127.0.0.1:{port}" in status
    assert f"user@{USER_UID}.service" in status
    journal = machine.sh("journalctl --user -u jobd --no-pager -o cat", user=USER).stdout
    assert "jobd: jobd" in journal and "ready" in journal


def test_a_job_runs_on_rootless_podman(machine: Machine) -> None:
    started = machine.sh(f"jobctl run --wait {IMAGE} -- sh -c 'echo hello; id -u'", user=USER)
    _, run_id = started.stdout.split()
    assert machine.sh(f"jobctl logs {run_id}", user=USER).stdout.split() == ["hello", "0"]
    run = json.loads(machine.sh(f"jobctl show --json {run_id}", user=USER).stdout)
    assert run["status"] == "succeeded"
    health = machine.sh("jobctl health", user=USER).stdout
    assert "rootless" in health


def test_a_second_install_changes_nothing(machine: Machine) -> None:
    said = machine.sh("jobd install --user", user=USER).stdout.splitlines()
    assert "everything is in place" in said


def test_a_user_without_subordinate_ids_is_stopped_with_the_fix(machine: Machine) -> None:
    machine.sh("useradd --create-home -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 bob")
    done = machine.sh("cd && jobd install --user", user="bob", check=False)
    assert done.returncode == 1
    assert "bob has fewer than 65536 subordinate ids in /etc/subuid and /etc/subgid" in done.stderr
    assert "sudo usermod --add-subuids" in done.stderr
    assert machine.sh("test -e ~bob/.config/systemd", check=False).returncode == 1


def test_uninstall_as_the_user(machine: Machine) -> None:
    said = machine.sh("jobd uninstall", user=USER).stdout
    assert "systemctl --user disable --now jobd: done" in said
    assert machine.sh("systemctl --user is-active jobd", user=USER, check=False).stdout.strip() in (
        "inactive",
        "failed",
    )
