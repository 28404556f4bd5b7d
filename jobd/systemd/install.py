"""`jobd install` and `jobd uninstall`: jobd as a systemd service, put in place step by step.

Each step says what it sees to and whether it is already so; install runs only the steps that
are not, prints each (or, for a dry run, what it would do), and a second install finds them
all in place. Problems that would leave a broken service (no systemd, not root for the system
unit, no subordinate ids for a user's rootless podman) stop it before anything changes.

    --system  /etc/systemd/system/jobd.service, group jobd, /var/lib/jobd (root, 0700),
              /etc/jobd; `systemctl enable --now jobd` (root; rootful podman)
    --user    ~/.config/systemd/user/jobd.service, ~/.local/share/jobd (0700), the user's
              subordinate id ranges checked; `systemctl --user enable --now jobd`
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from jobd.errors import JobdError

UNIT_NAME = "jobd.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_CONFIG_DIR = Path("/etc/jobd")
GROUP = "jobd"
SUBORDINATE_IDS = 65536  # enough for an image's users (rootless podman maps them here)
FIRST_SUBORDINATE_ID = 100000  # where useradd starts its ranges


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where a unit goes: the system's systemd, or one user's. `root` is "/" except when a dry
    run plans against another directory."""

    system: bool
    user: str
    uid: int
    gid: int
    home: Path
    program: Path  # the jobd that ExecStart runs
    data_dir: Path
    root: Path = Path("/")

    @property
    def unit_path(self) -> Path:
        if self.system:
            return SYSTEM_UNIT_DIR / UNIT_NAME
        return self.home / ".config" / "systemd" / "user" / UNIT_NAME

    @property
    def systemctl(self) -> list[str]:
        return ["systemctl"] if self.system else ["systemctl", "--user"]

    @property
    def journal_hint(self) -> str:
        return "journalctl -u jobd" if self.system else "journalctl --user -u jobd"

    def on_disk(self, path: Path) -> Path:
        """`path` under this target's root."""
        return self.root / path.relative_to("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One thing install or uninstall sees to: `change` is what it would do ("create"), and
    `changed` what it did ("created"); None when it is already so, which `already` says."""

    subject: str
    change: str | None
    changed: str = ""
    apply: Callable[[], None] = field(default=lambda: None)
    already: str = "already in place"

    def line(self, *, dry_run: bool) -> str:
        if self.change is None:
            return f"{self.subject}: {self.already}"
        return f"{self.subject}: {'would ' + self.change if dry_run else self.changed}"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitState:
    """What systemd says of the unit; all False where it cannot be asked (a dry run
    against another root, no systemd)."""

    enabled: bool = False
    active: bool = False
    stale: bool = False  # the file changed since systemd read it: needs daemon-reload


def unit_text(*, system: bool, program: Path) -> str:
    """The unit shipped with jobd, its ExecStart running `program`."""
    name = "jobd.service" if system else "jobd-user.service"
    template = resources.files("jobd.systemd").joinpath("units", name).read_text()
    lines = []
    for line in template.splitlines():
        _, _, arguments = line.removeprefix("ExecStart=").partition(" ")
        exec_start = f"ExecStart={_unit_word(str(program))} {arguments}".rstrip()
        lines.append(exec_start if line.startswith("ExecStart=") else line)
    return "\n".join(lines) + "\n"


def _unit_word(value: str) -> str:
    """A path as one word of a unit's command line: % doubled, quoted if it has spaces."""
    value = value.replace("%", "%%")
    if any(c in value for c in " \t\"'\\"):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def run(command: list[str]) -> None:
    """A command install runs; its failure stops install with what it said."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise JobdError(f"{' '.join(command)} failed ({done.returncode}): {said}")


def unit_state(target: Target) -> UnitState:
    """Ask systemd about jobd.service (for a real root, where systemd runs)."""
    if target.root != Path("/") or not systemd_running(target):
        return UnitState()
    properties = "--property=UnitFileState,ActiveState,NeedDaemonReload"
    done = subprocess.run(
        [*target.systemctl, "show", UNIT_NAME, properties],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    shown = dict(line.partition("=")[::2] for line in done.stdout.splitlines())
    return UnitState(
        enabled=shown.get("UnitFileState") == "enabled",
        active=shown.get("ActiveState") in ("active", "activating", "reloading"),
        stale=shown.get("NeedDaemonReload") == "yes",
    )


def systemd_running(target: Target) -> bool:
    """Whether the system booted with systemd (sd_booted), or this user's manager runs."""
    if target.system:
        return Path("/run/systemd/system").is_dir()
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    # os.path: a runtime directory of another user's is not ours to look into (EACCES)
    return runtime_dir is not None and os.path.exists(Path(runtime_dir) / "systemd" / "private")


def group_exists(target: Target, name: str) -> bool:
    if target.root == Path("/"):
        try:
            grp.getgrnam(name)
        except KeyError:
            return False
        return True
    return any(line.split(":", 1)[0] == name for line in _lines(target.on_disk(Path("/etc/group"))))


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def group_step(target: Target) -> Step:
    """The group whose members may use the system daemon's socket."""
    if group_exists(target, GROUP):
        return Step(subject=f"group {GROUP}", change=None)
    prefix = [] if target.root == Path("/") else ["--prefix", str(target.root)]
    return Step(
        subject=f"group {GROUP}",
        change="create it (groupadd --system)",
        changed="created",
        apply=lambda: run(["groupadd", *prefix, "--system", GROUP]),
    )


def directory_step(target: Target, path: Path, mode: int) -> Step:
    """A directory owned by the target's user, with this mode."""
    real = target.on_disk(path)
    subject = f"directory {path} ({target.user}, {mode:04o})"
    try:
        found = real.stat()
    except FileNotFoundError:
        change, changed = "create it", "created"
    else:
        if (found.st_uid, found.st_gid, found.st_mode & 0o7777) == (target.uid, target.gid, mode):
            return Step(subject=subject, change=None)
        change, changed = f"set its owner and mode ({found.st_mode & 0o7777:04o} now)", "fixed"

    def make() -> None:
        real.mkdir(parents=True, exist_ok=True)
        os.chown(real, target.uid, target.gid)
        real.chmod(mode)

    return Step(subject=subject, change=change, changed=changed, apply=make)


def unit_step(target: Target, text: str) -> Step:
    """The unit file, written whole when it differs from what this jobd ships."""
    real = target.on_disk(target.unit_path)
    subject = f"unit {target.unit_path}"
    try:
        current = real.read_text()
    except FileNotFoundError:
        current = None
    if current == text:
        return Step(subject=subject, change=None)
    change = "write it" if current is None else "update it"
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))

    def write() -> None:
        real.parent.mkdir(parents=True, exist_ok=True)
        partial = real.with_name(real.name + ".partial")
        partial.write_text(text)
        partial.chmod(0o644)
        partial.replace(real)

    return Step(
        subject=f"{subject} ({exec_start})",
        change=change,
        changed="written" if current is None else "updated",
        apply=write,
    )


def start_steps(target: Target, *, unit_changed: bool) -> Iterator[Step]:
    """daemon-reload when the file changed; enable --now, or a restart (jobs live on) so a
    running jobd takes the new unit."""
    state = unit_state(target)
    reload = [*target.systemctl, "daemon-reload"]
    if unit_changed or state.stale:
        yield Step(
            subject=" ".join(reload), change="run", changed="done", apply=lambda: run(reload)
        )
    start = [*target.systemctl, "enable", "--now", "jobd"]
    if unit_changed and state.enabled and state.active:
        start = [*target.systemctl, "restart", "jobd"]
    elif state.enabled and state.active:
        yield Step(subject=" ".join(start), change=None)
        return
    yield Step(subject=" ".join(start), change="run", changed="done", apply=lambda: run(start))


def subordinate_count(target: Target, path: Path) -> int:
    """How many subordinate ids /etc/subuid or /etc/subgid gives the user (name or uid)."""
    total = 0
    for line in _lines(target.on_disk(path)):
        owner, _, rest = line.strip().partition(":")
        _, _, count = rest.partition(":")
        if owner in (target.user, str(target.uid)) and count.isdigit():
            total += int(count)
    return total


def subordinate_problem(target: Target) -> str | None:
    """Rootless podman maps an image's users into its user's subordinate ids: without a
    range, images with more than one user fail to unpack. What to run when there is none."""
    if target.system or target.uid == 0:
        return None
    short = [
        path
        for path in ("/etc/subuid", "/etc/subgid")
        if subordinate_count(target, Path(path)) < SUBORDINATE_IDS
    ]
    if not short:
        return None
    start = _free_subordinate_start(target)
    span = f"{start}-{start + SUBORDINATE_IDS - 1}"
    return (
        f"{target.user} has fewer than {SUBORDINATE_IDS} subordinate ids in {' and '.join(short)},"
        f" which rootless podman needs: sudo usermod --add-subuids {span} --add-subgids {span}"
        f" {target.user}"
    )


def _free_subordinate_start(target: Target) -> int:
    """The first id after every range /etc/subuid and /etc/subgid already give out."""
    end = FIRST_SUBORDINATE_ID
    for path in ("/etc/subuid", "/etc/subgid"):
        for line in _lines(target.on_disk(Path(path))):
            fields = line.strip().split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                end = max(end, int(fields[1]) + int(fields[2]))
    return end


def install_steps(target: Target) -> list[Step]:
    """What `jobd install` sees to, in order."""
    steps = []
    if target.system:
        steps.append(group_step(target))
        steps.append(directory_step(target, SYSTEM_CONFIG_DIR, 0o755))
    steps.append(directory_step(target, target.data_dir, 0o700))
    unit = unit_step(target, unit_text(system=target.system, program=target.program))
    steps.append(unit)
    steps.extend(start_steps(target, unit_changed=unit.change is not None))
    return steps


def install_problems(target: Target, *, dry_run: bool) -> list[str]:
    """What would leave a broken service: install stops on these before changing anything."""
    problems = []
    if not target.program.is_file() or not os.access(target.program, os.X_OK):
        problems.append(f"{target.program} is not an executable jobd to run")
    if target.system and os.geteuid() != 0 and not dry_run:
        problems.append("installing the system unit needs root: sudo jobd install --system")
    if target.root == Path("/") and not dry_run and not systemd_running(target):
        problems.append(_no_systemd(target))
    problem = subordinate_problem(target)
    if problem:
        problems.append(problem)
    return problems


def _no_systemd(target: Target) -> str:
    if target.system:
        return "systemd is not running here (no /run/systemd/system): start jobd another way"
    return (
        f"no systemd user manager for {target.user} (is XDG_RUNTIME_DIR set, and"
        f" user@{target.uid}.service running? `loginctl enable-linger {target.user}` starts it"
        " without a login)"
    )


def install_notes(target: Target) -> list[str]:
    """What to do next, said after installing."""
    notes = [f"status: {' '.join(target.systemctl)} status jobd; logs: {target.journal_hint}"]
    if target.system:
        notes.append(f"let a user run jobctl: usermod -aG {GROUP} USER (then they log in again)")
    elif not target.on_disk(Path("/var/lib/systemd/linger") / target.user).exists():
        notes.append(
            f"jobd stops when {target.user} logs out; to keep it running:"
            f" loginctl enable-linger {target.user}"
        )
    return notes


def uninstall_steps(target: Target, *, purge: bool) -> list[Step]:
    """Stop and disable the unit, remove its file; the data only with purge."""
    state = unit_state(target)
    unit = target.on_disk(target.unit_path)
    stop = [*target.systemctl, "disable", "--now", "jobd"]
    steps = [
        Step(
            subject=" ".join(stop),
            change="run" if state.enabled or state.active else None,
            changed="done",
            apply=lambda: run(stop),
            already="not enabled, not running",
        ),
        Step(
            subject=f"unit {target.unit_path}",
            change="remove it" if unit.exists() else None,
            changed="removed",
            apply=lambda: unit.unlink(missing_ok=True),
            already="not there",
        ),
    ]
    if unit.exists() and systemd_running(target) and target.root == Path("/"):
        reload = [*target.systemctl, "daemon-reload"]
        steps.append(
            Step(subject=" ".join(reload), change="run", changed="done", apply=lambda: run(reload))
        )
    if purge:
        steps.extend(_purge_steps(target))
    return steps


def _purge_steps(target: Target) -> Iterator[Step]:
    data = target.on_disk(target.data_dir)
    yield Step(
        subject=f"directory {target.data_dir} (jobs, runs, logs, outputs)",
        change="delete it" if data.exists() else None,
        changed="deleted",
        apply=lambda: shutil.rmtree(data),
        already="not there",
    )
    if target.system:
        prefix = [] if target.root == Path("/") else ["--prefix", str(target.root)]
        yield Step(
            subject=f"group {GROUP}",
            change="delete it" if group_exists(target, GROUP) else None,
            changed="deleted",
            apply=lambda: run(["groupdel", *prefix, GROUP]),
            already="not there",
        )


def uninstall_notes(target: Target, *, purge: bool) -> list[str]:
    notes = ["jobs still running keep running (podman ps --filter label=io.jobd.managed=true)"]
    if not purge and target.on_disk(target.data_dir).exists():
        notes.append(f"kept {target.data_dir} (jobs, runs, logs): `--purge` deletes it")
    return notes


def carry_out(
    steps: list[Step], *, dry_run: bool, say: Callable[[str], None], settled: str
) -> None:
    """Each step in turn, printed as done (or as it would be); a failure stops the rest.
    `settled` is said when no step had anything to do."""
    for step in steps:
        if step.change is not None and not dry_run:
            step.apply()
        say(step.line(dry_run=dry_run))
    if all(step.change is None for step in steps):
        say(settled)
