"""The TCP port a daemon serves by default: 8427 for the system daemon and root's; each other
user's own daemon its own, from its uid, so that users on one machine don't fight over one."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobd.config import DEFAULT_PORT, default_port, default_ssh_port, load
from jobd.errors import InvalidRequest


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


@pytest.mark.parametrize(
    ("uid", "system", "port"),
    [(0, False, 8422), (1000, True, 8422), (1000, False, 62000), (5500, False, 62000)],
)
def test_each_users_ssh_gateway_has_its_own_port(
    monkeypatch: pytest.MonkeyPatch, uid: int, system: bool, port: int
) -> None:
    monkeypatch.setattr("os.getuid", lambda: uid)
    monkeypatch.delenv("JOBD_SSH_PORT", raising=False)
    assert default_ssh_port(system) == port
    assert 60999 < port <= 65535 or port == 8422  # above the kernel's ephemeral ports
    config = load(config_file=None, overrides={}, system=system)
    assert config.ssh.port == port and config.ssh.on and config.ssh.address == "127.0.0.1"
    assert config.ssh.endpoint is not None and config.ssh.endpoint.port == port


def test_the_ssh_gateway_can_be_moved_or_turned_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JOBD_SSH_PORT", raising=False)
    toml = tmp_path / "jobd.toml"
    toml.write_text('[ssh]\nport = 2222\naddress = "0.0.0.0"\nhost = "gpu1.example.org"\n')
    config = load(config_file=toml, overrides={})
    assert (config.ssh.port, config.ssh.advertised_host) == (2222, "gpu1.example.org")
    monkeypatch.setenv("JOBD_SSH_PORT", "0")
    assert load(config_file=toml, overrides={}).ssh.endpoint is None
    toml.write_text("[ssh]\nenabled = false\n")
    monkeypatch.delenv("JOBD_SSH_PORT")
    assert not load(config_file=toml, overrides={}).ssh.on
    for bad, words in [("[ssh]\nport = 70000\n", "ssh.port"), ("[ssh]\nprot = 1\n", "prot")]:
        toml.write_text(bad)
        with pytest.raises(InvalidRequest, match=words):
            load(config_file=toml, overrides={})
