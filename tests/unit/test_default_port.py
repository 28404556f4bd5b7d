"""The TCP port a daemon serves by default: 8427 for the system daemon and root's; each other
user's own daemon its own, from its uid, so that users on one machine don't fight over one."""

from __future__ import annotations

import pytest

from jobd.config import DEFAULT_PORT, default_port, load


@pytest.mark.parametrize(
    ("uid", "system", "port"),
    [(0, False, 8427), (1000, True, 8427), (1000, False, 11000), (1001, False, 11001),
     (23000, False, 11000), (100_000, False, 10000 + 100_000 % 22000)],
)  # fmt: skip
def test_each_users_daemon_has_its_own_port(
    monkeypatch: pytest.MonkeyPatch, uid: int, system: bool, port: int
) -> None:
    monkeypatch.setattr("os.getuid", lambda: uid)
    assert default_port(system) == port
    assert 1024 < port < 32768  # below the kernel's ephemeral ports (32768-60999)


def test_a_configured_port_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.getuid", lambda: 1000)
    assert load(config_file=None, overrides={"port": 9000}).port == 9000
    assert load(config_file=None, overrides={}, system=True).port == DEFAULT_PORT
