"""`jobd install` and `jobd uninstall`, the subcommands of the `jobd` command (which runs the
daemon when given none): the steps are install.py's; this is their command line."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from jobd.config import load
from jobd.errors import JobdError
from jobd.systemd.install import (
    Target,
    carry_out,
    install_notes,
    install_problems,
    install_steps,
    uninstall_notes,
    uninstall_steps,
)


def running_program(argv0: str) -> Path:
    """The jobd being run, as ExecStart should name it: the path it was started by (a link
    such as /usr/local/bin/jobd is kept, so an upgrade behind it needs no new unit), else the
    `jobd` on PATH."""
    if os.sep in argv0 and os.access(argv0, os.X_OK) and not argv0.endswith(".py"):
        return Path(os.path.abspath(argv0))
    found = shutil.which("jobd")
    if found is None:
        raise JobdError("can't tell where this jobd is installed: run it by its path")
    return Path(os.path.abspath(found))


def target_for(*, system: bool, root: Path = Path("/")) -> Target:
    """The system unit (root's, rootful podman) or the calling user's, with the data directory
    the daemon would use (its configuration file included)."""
    account = pwd.getpwuid(0 if system else os.getuid())
    config = load(config_file=None, overrides={}, system=system)
    return Target(
        system=system,
        user=account.pw_name,
        uid=account.pw_uid,
        gid=account.pw_gid,
        home=Path(account.pw_dir),
        program=running_program(sys.argv[0]),
        data_dir=config.data_dir,
        root=root,
    )


@contextlib.contextmanager
def failures_said() -> Iterator[None]:
    """A failure is one line, `jobd: ...`, and exit status 1, as for the daemon."""
    try:
        yield
    except JobdError as e:
        raise SystemExit(f"jobd: {e}") from None


def _scope(system: bool, user: bool) -> bool:
    """Whether --system was meant; exactly one of --system and --user."""
    if system == user:
        raise click.UsageError("say --system (the system's service) or --user (your own)")
    return system


@click.command()
@click.option("--system", is_flag=True, help="The system service: rootful podman, group jobd.")
@click.option("--user", is_flag=True, help="Your own user service: rootless podman.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
def install(system: bool, user: bool, dry_run: bool) -> None:
    """Install jobd as a systemd service and start it: the unit (ExecStart is this jobd), the
    jobd group, directories, then `systemctl enable --now jobd`. Safe to run again."""
    with failures_said():
        target = target_for(system=_scope(system, user))
        problems = install_problems(target, dry_run=dry_run)
        if problems:
            raise JobdError("; ".join(problems))
        steps = install_steps(target)
        carry_out(steps, dry_run=dry_run, say=click.echo, settled="everything is in place")
    if not dry_run:
        for note in install_notes(target):
            click.echo(note)


@click.command()
@click.option("--system", is_flag=True, help="The system service (default for root).")
@click.option("--user", is_flag=True, help="Your own user service (default for other users).")
@click.option("--purge", is_flag=True, help="Delete jobd's data too: every job, run and log.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
def uninstall(system: bool, user: bool, purge: bool, dry_run: bool) -> None:
    """Stop and disable the jobd service and remove its unit. Data is kept unless --purge.
    Running jobs' containers keep running."""
    if not (system or user):
        system = os.geteuid() == 0
        user = not system
    with failures_said():
        target = target_for(system=_scope(system, user))
        if target.system and os.geteuid() != 0 and not dry_run:
            raise JobdError("removing the system unit needs root: sudo jobd uninstall --system")
        steps = uninstall_steps(target, purge=purge)
        carry_out(steps, dry_run=dry_run, say=click.echo, settled="nothing to remove")
    for note in uninstall_notes(target, purge=purge):
        click.echo(note)
