"""Configuration layers: defaults < TOML < environment < flags; bad files are clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobd.config import default_socket, load
from jobd.config.tables import OutputSettings, UploadSettings
from jobd.domain.resources import MIB
from jobd.errors import InvalidRequest


def test_defaults_work_without_any_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    config = load(config_file=None, overrides={})
    assert config.data_dir == tmp_path / "data" / "jobd"
    assert config.socket == tmp_path / "run" / "jobd" / "jobd.sock"
    assert (config.host, config.port, config.tcp) == ("127.0.0.1", 8427, True)
    assert config.default_plan == "standard"
    assert config.default_timeout_seconds == 30 * 24 * 3600


def test_system_mode_uses_system_paths() -> None:
    config = load(config_file=None, overrides={}, system=True)
    assert config.data_dir == Path("/var/lib/jobd")
    assert config.socket == Path("/run/jobd/jobd.sock")


def test_layers_override_in_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "jobd.toml"
    toml.write_text(
        'port = 9000\nhost = "127.0.0.2"\ndefault_plan = "starter"\n'
        "[plans.starter]\nprice_per_month = 9\n"
        "[plans.big]\nmemory_mb = 1024\ncpus = 1\n"
        "[logs]\nmax_bytes = 2097152\nhead_bytes = 1048576\nprogress_markers = false\n"
    )
    monkeypatch.setenv("JOBD_PORT", "9100")
    config = load(config_file=toml, overrides={"port": 9200, "data_dir": tmp_path})
    assert config.port == 9200
    assert config.host == "127.0.0.2"
    assert config.plans["starter"].price_per_month == 9
    assert config.plans["starter"].memory_bytes == 512 * MIB
    assert config.plans["big"].memory_bytes == 1024 * MIB
    assert config.logs.max_bytes == 2 * MIB
    assert config.logs.progress_markers is False
    monkeypatch.delenv("JOBD_PORT")
    assert load(config_file=toml, overrides={}).port == 9000


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("port = ", "config file"),
        ("bogus = 1\n", "unknown configuration keys: bogus"),
        ('default_plan = "nope"\n', "default_plan"),
        ("[plans.new]\ncpus = 1\n", "memory_mb"),
        ("[logs]\nmax_bytes = 10\nhead_bytes = 20\n", "head_bytes"),
        ("[plan.gpu]\ncpus = 1\n", "unknown table \\[plan\\]"),
        ("[podman]\nsockett = 1\n", "unknown keys in \\[podman\\]: sockett"),
        ("[plans.x]\nmemory = 1\n", "unknown keys in \\[plans.x\\]"),
        ("default_timeout_seconds = 99999999999\n", "default_timeout_seconds"),
        ('admins = "alice"\n', "admins: a list of user names"),
        ('admins = [""]\n', "admins: a list of user names"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path: Path, text: str, fragment: str) -> None:
    toml = tmp_path / "jobd.toml"
    toml.write_text(text)
    with pytest.raises(InvalidRequest, match=fragment):
        load(config_file=toml, overrides={})


def test_socket_without_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert default_socket().name == "jobd.sock"


def test_the_user_config_file_is_read_when_present(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("JOBD_CONFIG", raising=False)
    (tmp_path / "jobd").mkdir()
    (tmp_path / "jobd" / "jobd.toml").write_text("port = 9999\n")
    assert load(config_file=None, overrides={}).port == 9999


def test_host_paths_jobs_may_mount(tmp_path: Path) -> None:
    user = load(config_file=None, overrides={"data_dir": tmp_path})
    assert user.volumes.allowed_host_paths == (Path.home(),)
    system = load(config_file=None, overrides={"data_dir": tmp_path}, system=True)
    assert system.volumes.allowed_host_paths == ()
    configured = tmp_path / "jobd.toml"
    configured.write_text('[volumes]\nallowed_host_paths = ["/srv/data"]\n')
    assert load(config_file=configured, overrides={}).volumes.allowed_host_paths == (
        Path("/srv/data"),
    )
    configured.write_text('[volumes]\nallowed_host_paths = ["srv"]\n')
    with pytest.raises(InvalidRequest, match="must be absolute: srv"):
        load(config_file=configured, overrides={})
    configured.write_text('[volumes]\nallowed = ["/srv"]\n')
    with pytest.raises(InvalidRequest, match=r"unknown keys in \[volumes\]: allowed"):
        load(config_file=configured, overrides={})


def test_the_example_configuration_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "jobd.toml"
    config = load(config_file=example, overrides={})
    assert config.volumes.allowed_host_paths == (Path("/srv/data"),)
    assert "render-node" in config.plans
    assert config.admins == frozenset({"alice"})
    assert config.sharing.projects_of("bob") == {"vision"}
    assert config.sharing.user_quota("alice").max_running == 8
    assert config.sharing.user_quota("bob").max_running == 4
    assert (config.outputs, config.uploads) == (OutputSettings(), UploadSettings()), (
        "the example shows the defaults"
    )


def test_a_typo_in_a_quota_table_is_refused_saying_where(tmp_path: Path) -> None:
    configured = tmp_path / "jobd.toml"
    configured.write_text("[quotas.users.bob]\nmax_runing = 2\n")
    with pytest.raises(InvalidRequest, match=r"unknown keys in \[quotas.users.bob\]: max_runing"):
        load(config_file=configured, overrides={})


def test_bad_upload_settings_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="uploads: max_bytes and expire_days"):
        load(config_file=None, overrides={"uploads": {"expire_days": 0}})


def test_admins_are_root_the_daemons_user_and_those_configured(tmp_path: Path) -> None:
    configured = tmp_path / "jobd.toml"
    configured.write_text('admins = ["alice"]\n')
    config = load(config_file=configured, overrides={})
    assert config.admins == frozenset({"alice"})
    assert config.is_admin("alice", 2001)
    assert config.is_admin("root", 0) and config.is_admin("me", os.getuid())
    assert not config.is_admin("bob", 2002)
    assert not load(config_file=None, overrides={"data_dir": tmp_path}).is_admin("alice", 2001)
