"""`jobd install` planned against a directory standing in for `/` (a dry run changes
nothing), the unit it writes, the subordinate-id check, and uninstall's plan. The real thing,
under a real systemd, is tests/systemd/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from jobd.systemd.install import (
    Target,
    carry_out,
    install_problems,
    install_steps,
    subordinate_problem,
    uninstall_steps,
    unit_text,
)


def target(root: Path, *, system: bool = True, user: str = "root") -> Target:
    program = root / "opt" / "jobd" / "bin" / "jobd"
    if not program.exists():
        program.parent.mkdir(parents=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    return Target(
        system=system,
        user=user,
        uid=os.getuid() if system else 1000,
        gid=os.getgid() if system else 1000,
        home=Path("/home") / user,
        program=program,
        data_dir=Path("/var/lib/jobd") if system else Path(f"/home/{user}/.local/share/jobd"),
        root=root,
    )


def lines(steps: list, *, dry_run: bool = True) -> list[str]:
    said: list[str] = []
    carry_out(steps, dry_run=dry_run, say=said.append, settled="everything is in place")
    return said


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_a_dry_run_says_everything_it_would_do_and_changes_nothing(tmp_path: Path) -> None:
    t = target(tmp_path)
    before = tree(tmp_path)
    assert install_problems(t, dry_run=True) == []
    said = lines(install_steps(t))
    assert said == [
        "group jobd: would create it (groupadd --system)",
        "directory /etc/jobd (root, 0755): would create it",
        "directory /var/lib/jobd (root, 0700): would create it",
        f"unit /etc/systemd/system/jobd.service (ExecStart={t.program} --system): would write it",
        "systemctl daemon-reload: would run",
        "systemctl enable --now jobd: would run",
    ]
    assert tree(tmp_path) == before


def test_what_is_in_place_is_left_alone(tmp_path: Path) -> None:
    t = target(tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "group").write_text("root:x:0:\njobd:x:997:alice\n")
    for path, mode in (("etc/jobd", 0o755), ("var/lib/jobd", 0o700)):
        (tmp_path / path).mkdir(parents=True, exist_ok=True)
        (tmp_path / path).chmod(mode)
    unit = tmp_path / "etc/systemd/system/jobd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(unit_text(system=True, program=t.program))
    said = lines(install_steps(t))
    assert said[:4] == [
        "group jobd: already in place",
        "directory /etc/jobd (root, 0755): already in place",
        "directory /var/lib/jobd (root, 0700): already in place",
        "unit /etc/systemd/system/jobd.service: already in place",
    ]
    # an unchanged unit needs no daemon-reload; systemd itself can't be asked about a root
    # that is not "/", so starting is still planned
    assert said[4:] == ["systemctl enable --now jobd: would run"]


def test_a_wrong_mode_is_fixed_and_a_changed_unit_updated(tmp_path: Path) -> None:
    t = target(tmp_path)
    (tmp_path / "var/lib/jobd").mkdir(parents=True)
    (tmp_path / "var/lib/jobd").chmod(0o755)
    unit = tmp_path / "etc/systemd/system/jobd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/old/jobd --system\n")
    # only the files: groupadd and systemctl would act on this machine, not on tmp_path
    steps = [s for s in install_steps(t) if s.subject.startswith(("directory", "unit"))]
    said = lines(steps, dry_run=False)
    assert said[1:] == [
        "directory /var/lib/jobd (root, 0700): fixed",
        f"unit /etc/systemd/system/jobd.service (ExecStart={t.program} --system): updated",
    ]
    assert (tmp_path / "var/lib/jobd").stat().st_mode & 0o777 == 0o700
    assert unit.read_text() == unit_text(system=True, program=t.program)
    assert unit.stat().st_mode & 0o777 == 0o644


def test_the_unit_runs_this_jobd_as_a_notify_service() -> None:
    text = unit_text(system=True, program=Path("/opt/jobd 2/bin/jobd%x"))
    assert 'ExecStart="/opt/jobd 2/bin/jobd%%x" --system' in text.splitlines()
    directives = {line.partition("=")[0] for line in text.splitlines() if "=" in line}
    for directive in ("Type", "KillMode", "Restart", "NoNewPrivileges", "LockPersonality"):
        assert directive in directives
    assert "Type=notify" in text and "KillMode=process" in text
    assert "Restart=on-failure" in text
    user = unit_text(system=False, program=Path("/usr/local/bin/jobd"))
    assert "ExecStart=/usr/local/bin/jobd" in user.splitlines()
    assert "Type=notify" in user
    # rootless podman's newuidmap is setuid: no_new_privs would break it
    assert not any(line.startswith("NoNewPrivileges") for line in user.splitlines())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("system", [True, False])
def test_systemd_accepts_the_units_it_would_write(tmp_path: Path, system: bool) -> None:
    t = target(tmp_path)
    unit = tmp_path / "jobd.service"
    unit.write_text(unit_text(system=system, program=t.program))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    complaints = [line for line in done.stderr.splitlines() if "jobd.service" in line]
    assert (done.returncode, complaints) == (0, [])


def test_a_user_without_subordinate_ids_is_told_how_to_get_them(tmp_path: Path) -> None:
    t = target(tmp_path, system=False, user="bob")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/subuid").write_text("alice:100000:65536\n")
    (tmp_path / "etc/subgid").write_text("alice:100000:65536\nbob:300000:65536\n")
    problem = subordinate_problem(t)
    assert problem is not None
    assert "bob has fewer than 65536 subordinate ids in /etc/subuid," in problem
    assert problem.endswith(
        "sudo usermod --add-subuids 365536-431071 --add-subgids 365536-431071 bob"
    )
    assert problem in install_problems(t, dry_run=True)
    (tmp_path / "etc/subuid").write_text("alice:100000:65536\n1000:200000:65536\n")  # by uid
    assert subordinate_problem(t) is None


def test_the_user_unit_goes_to_the_users_config(tmp_path: Path) -> None:
    t = target(tmp_path, system=False, user="alice")
    said = lines(install_steps(t))
    assert said[0] == "directory /home/alice/.local/share/jobd (alice, 0700): would create it"
    assert said[1].startswith("unit /home/alice/.config/systemd/user/jobd.service")
    assert said[2:] == [
        "systemctl --user daemon-reload: would run",
        "systemctl --user enable --now jobd: would run",
    ]


def test_uninstall_keeps_data_unless_purged(tmp_path: Path) -> None:
    t = target(tmp_path)
    unit = tmp_path / "etc/systemd/system/jobd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\n")
    (tmp_path / "var/lib/jobd").mkdir(parents=True)
    said = lines(uninstall_steps(t, purge=False))
    assert said == [
        "systemctl disable --now jobd: not enabled, not running",
        "unit /etc/systemd/system/jobd.service: would remove it",
    ]
    purge = lines(uninstall_steps(t, purge=True))
    assert "directory /var/lib/jobd (jobs, runs, logs, outputs): would delete it" in purge
    lines(uninstall_steps(t, purge=False)[1:], dry_run=False)  # the file, not systemctl
    assert not unit.exists() and (tmp_path / "var/lib/jobd").exists()
