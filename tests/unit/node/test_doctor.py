"""The doctor's checks of how jobd runs as a service, on what they read: the cgroup a process
is in, the subordinate id files, the socket's mode, the data disk's room."""

from __future__ import annotations

import os
from pathlib import Path

from jobd.config import Config
from jobd.config.tables import OutputSettings
from jobd.node.doctor import _disk, _socket, subordinate_count, systemd_unit

SYSTEM_CGROUP = "0::/system.slice/jobd.service\n"
USER_CGROUP = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/jobd.service\n"


def test_the_unit_is_found_from_the_cgroup() -> None:
    assert systemd_unit(SYSTEM_CGROUP, None) == ("jobd.service", False)
    assert systemd_unit(USER_CGROUP, "abc") == ("jobd.service", True)
    login = "0::/user.slice/user-1000.slice/session-4.scope\n"
    assert systemd_unit(login, None) is None, "started by hand in a login session"
    assert systemd_unit("0::/\n", None) is None, "a container"
    terminal = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/vte-spawn-1.scope\n"
    assert systemd_unit(terminal, "inherited") is None, "a shell in a desktop's terminal"


def test_subordinate_ids_are_counted_by_name_or_uid(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:100000:65536\n1001:165536:1000\nbob:231072:65536\n")
    assert subordinate_count(subuid, "alice", 1000) == 65536
    assert subordinate_count(subuid, "carol", 1001) == 1000
    assert subordinate_count(subuid, "dave", 1002) == 0
    assert subordinate_count(tmp_path / "missing", "alice", 1000) == 0


def config_in(tmp_path: Path, *, reserve: int = 1) -> Config:
    return Config(
        data_dir=tmp_path,
        socket=tmp_path / "jobd.sock",
        outputs=OutputSettings(disk_reserve_bytes=reserve),
    )


def test_a_socket_with_another_mode_fails_with_its_fix(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    config.socket.touch()
    os.chmod(config.socket, 0o660)
    assert _socket(config).level == "ok"
    os.chmod(config.socket, 0o644)
    check = _socket(config)
    assert (check.level, check.fix) == ("fail", f"chmod 0660 {config.socket}")
    config.socket.unlink()
    assert _socket(config).level == "fail"


def test_a_disk_under_the_reserve_fails_saying_how_to_free_it(tmp_path: Path) -> None:
    assert _disk("data disk", tmp_path, config_in(tmp_path)).level == "ok"
    check = _disk("data disk", tmp_path, config_in(tmp_path, reserve=2**62))
    assert check.level == "fail" and "under the reserve" in check.message
    assert check.fix is not None and "jobctl prune" in check.fix
