"""A job's SSH settings as the service checks them: keys jobd can read, on persistent jobs
only, and allowedIps a daemon without firewall rules can still keep to."""

from __future__ import annotations

import asyncssh
import pytest

from jobd.domain.jobs import JobSpec, Kind
from jobd.errors import InvalidRequest
from jobd.services.ssh import checked_spec

KEY = asyncssh.generate_private_key("ssh-ed25519", comment="me@laptop")
PUBLIC = KEY.export_public_key().decode()


def spec(**given: object) -> JobSpec:
    return JobSpec(image="x", kind=Kind.PERSISTENT, **given)  # type: ignore[arg-type]


def test_keys_are_checked_and_trimmed() -> None:
    checked = checked_spec(
        spec(ssh_keys=(f"  {PUBLIC}  ",)), publish_address="127.0.0.1", firewall=False
    )
    assert checked.ssh_keys == (PUBLIC.strip(),)


@pytest.mark.parametrize(
    "key",
    [
        "ssh-ed25519 AAAAnope",
        KEY.export_private_key().decode(),
        "",
        f"{PUBLIC.strip()}\n{PUBLIC.strip()}",
    ],
)
def test_what_is_not_one_public_key_is_refused(key: str) -> None:
    with pytest.raises(InvalidRequest, match=r"sshKeys\[0\]"):
        checked_spec(spec(ssh_keys=(key,)), publish_address="127.0.0.1", firewall=True)


def test_only_persistent_jobs_take_keys() -> None:
    batch = JobSpec(image="x", kind=Kind.BATCH, ssh_keys=(PUBLIC,))
    with pytest.raises(InvalidRequest, match="persistent"):
        checked_spec(batch, publish_address="127.0.0.1", firewall=True)


def test_ports_that_would_need_a_firewall_are_refused_without_one() -> None:
    wanted = spec(ports=(8080,), allowed_ips=("10.0.0.0/8",))
    with pytest.raises(InvalidRequest, match="firewall"):
        checked_spec(wanted, publish_address="0.0.0.0", firewall=False)
    assert checked_spec(wanted, publish_address="0.0.0.0", firewall=True) == wanted
    local = spec(ports=(8080,), allowed_ips=("127.0.0.1/32",))
    assert checked_spec(local, publish_address="0.0.0.0", firewall=False) == local
