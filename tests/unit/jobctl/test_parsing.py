"""jobctl's pure parts: durations, KEY=VALUE pairs, times, ids, default paths, exit statuses."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobctl import defaults
from jobctl.client import load_token, segment
from jobctl.parsing import (
    check_id,
    id_kind,
    parse_duration,
    parse_pair,
    parse_since,
    parse_size,
    parse_volume,
    read_env_file,
)
from jobctl.render import values
from jobctl.waiting import MAX_DELAY, exit_status, failure_note, poll_delays

# -- durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("3d", 259200),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        (" 2H ", 7200),
        ("0h1s", 1),
    ],
)
def test_duration_in_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "s", "1x", "1.5h", "-5", "5 m", "30m1h", "1h1h", "h1", "1m30", "²", "0", "0s"]
)
def test_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [1, 59, 90, 3600, 5400, 86400, 93784, 2592000])
def test_rendered_durations_parse_back(seconds: int) -> None:
    assert parse_duration(values.duration(seconds) or "") == seconds


# -- KEY=VALUE ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pair"),
    [("A=1", ("A", "1")), ("A=", ("A", "")), ("url=a=b", ("url", "a=b")), ("k= x ", ("k", " x "))],
)
def test_pair(text: str, pair: tuple[str, str]) -> None:
    assert parse_pair(text) == pair


@pytest.mark.parametrize("text", ["A", "", "=1", "=", "A-1"])
def test_pair_needs_a_key_and_an_equals_sign(text: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_pair(text)


# -- times ----------------------------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_since_relative_is_now_minus_the_duration_in_utc() -> None:
    assert parse_since("10m", now=NOW) == "2024-05-01T11:50:00.000+00:00"
    assert parse_since("1h30m", now=NOW) == "2024-05-01T10:30:00.000+00:00"


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000+00:00"),
        ("2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00.000+00:00"),
        ("2024-05-01T10:00:00.25-01:00", "2024-05-01T11:00:00.250+00:00"),
    ],
)
def test_since_rfc3339_is_sent_in_utc(text: str, utc: str) -> None:
    assert parse_since(text, now=NOW) == utc


def test_since_without_offset_is_local_time() -> None:
    local = datetime(2024, 5, 1, 10, 0).astimezone()
    assert parse_since("2024-05-01T10:00:00", now=NOW) == local.astimezone(UTC).isoformat(
        timespec="milliseconds"
    )


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01T00:00:00Z", "10x"])
def test_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since(text, now=NOW)


# -- ids ------------------------------------------------------------------------------


def test_id_kind_comes_from_the_prefix() -> None:
    assert id_kind("job-0123abcd") == "job"
    assert id_kind("run-0123ABCD") == "run"
    assert id_kind("run-") == "run"


@pytest.mark.parametrize("value", ["abc", "0199ab", "Job-1", "jobs-1", "run_1", "run-nightly"])
def test_names_and_bare_prefixes_are_left_to_the_daemon(value: str) -> None:
    assert id_kind(value) is None
    assert check_id(value, "job") == value


def test_commands_take_only_the_kinds_they_name() -> None:
    assert check_id("job-1", "job") == "job-1"
    assert check_id("run-1", "job", "run") == "run-1"
    with pytest.raises(ValueError, match="'run-1' is a run id; expected a job id"):
        check_id("run-1", "job")
    with pytest.raises(ValueError, match="give an id"):
        check_id(" ", "job", "run")


def test_ids_stay_one_path_segment() -> None:
    assert segment("job-1") == "job-1"
    assert segment("job-x/../../v1/plans") == "job-x%2F..%2F..%2Fv1%2Fplans"
    assert segment("run-a?b#c") == "run-a%3Fb%23c"


# -- default paths --------------------------------------------------------------------


def test_socket_under_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert defaults.user_socket() == Path("/run/user/1000/jobd/jobd.sock")


def test_socket_for_root_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(os, "getuid", lambda: 0)
    assert defaults.default_socket() == Path("/run/jobd/jobd.sock")


def test_socket_for_a_user_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "")
    monkeypatch.setattr(os, "getuid", lambda: 1234)
    assert defaults.user_socket() == Path("/tmp/jobd-1234/jobd.sock")


def test_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert defaults.default_data_dir() == tmp_path / "jobd"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", "/home/someone")
    assert defaults.default_data_dir() == Path("/home/someone/.local/share/jobd")


@pytest.mark.parametrize("xdg", ["/run/user/7", ""])
@pytest.mark.parametrize("uid", [0, 1000])
def test_paths_match_the_daemons(monkeypatch: pytest.MonkeyPatch, xdg: str, uid: int) -> None:
    from jobd import config

    monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    monkeypatch.setenv("XDG_DATA_HOME", xdg)
    monkeypatch.setattr(os, "getuid", lambda: uid)  # jobd reads it from os too
    assert defaults.user_socket() == config.default_socket(system=False)
    assert defaults.default_data_dir() == config.default_data_dir(system=False)


def test_without_a_daemon_of_their_own_users_reach_the_system_daemon(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    system = tmp_path / "system.sock"
    system.touch()
    monkeypatch.setattr(defaults, "SYSTEM_SOCKET", system)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "user"))
    assert defaults.default_socket() == system
    own = tmp_path / "user" / "jobd" / "jobd.sock"
    own.parent.mkdir(parents=True)
    own.touch()
    assert defaults.default_socket() == own


def test_token_is_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("  s3cret\n")
    assert load_token(tmp_path) == "s3cret"


def test_missing_or_empty_token_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="--token or set JOBD_TOKEN"):
        load_token(tmp_path)
    (tmp_path / "token").write_text("\n")
    with pytest.raises(Exception, match="is empty"):
        load_token(tmp_path)


# -- a run's end as an exit status ----------------------------------------------------


def _run(status: str, exit_code: int | None, kind: str | None = None) -> dict[str, object]:
    reason = {"type": kind, "message": "why"} if kind else None
    return {"id": "run-1", "status": status, "exitCode": exit_code, "failureReason": reason}


@pytest.mark.parametrize(
    ("run", "status"),
    [
        (_run("succeeded", 0), 0),
        (_run("failed", 3, "exit_code"), 3),
        (_run("failed", 137, "oom_killed"), 137),
        (_run("failed", None, "image_not_found"), 1),
        (_run("cancelled", None, "cancelled"), 1),
        (_run("cancelled", 143, "cancelled"), 143),
        # the container caught SIGTERM at its deadline and exited 0: still not a success
        (_run("failed", 0, "timeout"), 1),
        (_run("failed", 300, "runtime_error"), 1),
        # a command that could not run exits as a shell's would, whatever the init said
        (_run("failed", 1, "command_not_found"), 127),
        (_run("failed", 1, "command_not_executable"), 126),
    ],
)
def test_exit_status(run: dict[str, object], status: int) -> None:
    assert exit_status(run) == status


def test_a_failure_note_says_why_a_run_did_not_succeed() -> None:
    assert failure_note(_run("succeeded", 0)) is None
    assert failure_note(_run("failed", 3, "exit_code")) == "run run-1 failed: exit_code: why"
    assert failure_note(_run("failed", 137, "oom_killed")) == "run run-1 failed: oom_killed: why"
    assert (
        failure_note(_run("cancelled", None, "cancelled")) == "run run-1 cancelled: cancelled: why"
    )


def test_polls_fast_then_back_off_to_a_second() -> None:
    delays = poll_delays()
    first = [next(delays) for _ in range(5)]
    later = [next(delays) for _ in range(20)]
    assert first == [0.1] * 5
    assert later == sorted(later)
    assert later[0] > 0.1
    assert later[-1] == MAX_DELAY


# -- volumes and environment files ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "volume"),
    [
        ("cache:/data", {"source": "cache", "target": "/data", "readOnly": False}),
        ("cache:/data:ro", {"source": "cache", "target": "/data", "readOnly": True}),
        ("/srv/in:/in:rw", {"source": "/srv/in", "target": "/in", "readOnly": False}),
    ],
)
def test_volumes_read_as_podman_run_v(text: str, volume: dict[str, object]) -> None:
    assert parse_volume(text) == volume


@pytest.mark.parametrize("text", ["cache", ":/data", "cache:data", "cache:/data:rx", "a:b:c:d"])
def test_bad_volumes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_volume(text)


def test_env_files_read_as_dotenv(tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text("# a comment\nA=1\nexport B='two words'\nC\nD=x=y\n\n")
    assert read_env_file(env) == {"A": "1", "B": "two words", "C": "", "D": "x=y"}
    with pytest.raises(ValueError, match=r"missing\.env"):
        read_env_file(tmp_path / "missing.env")


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("50MB", 50_000_000), ("20GB", 20 * 10**9), ("1.5GiB", 3 * 2**29),
     ("100 kib", 102400), ("1TB", 10**12)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "1.5XB", "0"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
