"""SSH into a job, the pure parts: allowedIps as CIDRs, who they let in, where a run's
published ports go, and the run's `ssh` field."""

from __future__ import annotations

import pytest

from jobd.domain.ssh import (
    SshEndpoint,
    allows,
    loopback_only,
    parse_allowed,
    parse_cidrs,
    publish_address_for,
    published_alone,
)
from jobd.errors import InvalidRequest


def test_cidrs_come_back_in_normal_form_once_each() -> None:
    given = ["10.0.0.0/8", " 192.168.1.7 ", "::1", "10.0.0.0/8", "2001:db8::/32"]
    assert parse_cidrs(given) == ("10.0.0.0/8", "192.168.1.7/32", "::1/128", "2001:db8::/32")
    assert parse_allowed(None) is None
    assert parse_allowed([]) == ()


@pytest.mark.parametrize("bad", ["10.0.0.300/8", "10.0.0.1/8", "example.org", "", "1.2.3.4/33"])
def test_a_bad_cidr_is_refused_saying_which(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="allowedIps") as refused:
        parse_cidrs(["127.0.0.1", bad])
    assert repr(bad) in str(refused.value)


def test_no_cidrs_means_loopback_and_mapped_ipv4_is_ipv4() -> None:
    assert allows(None, "127.0.0.1") and allows(None, "127.9.9.9") and allows(None, "::1")
    assert not allows(None, "192.0.2.2")
    assert allows(("192.0.2.0/24",), "::ffff:192.0.2.2")
    assert not allows(("192.0.2.0/24",), "127.0.0.1")
    assert not allows((), "127.0.0.1"), "an empty list lets nobody in"
    assert not allows(("0.0.0.0/0",), "not an address")
    assert allows(("fe80::/10",), "fe80::1%eth0")


def test_loopback_only() -> None:
    assert loopback_only(None) and loopback_only(("127.0.0.1/32", "::1/128"))
    assert not loopback_only(("127.0.0.1/32", "10.0.0.0/8"))


@pytest.mark.parametrize(
    ("cidrs", "configured", "alone"),
    [
        (None, "0.0.0.0", True),
        (("127.0.0.1/32",), "0.0.0.0", True),  # published on loopback then
        (("0.0.0.0/0",), "0.0.0.0", True),
        (("10.0.0.0/8",), "0.0.0.0", False),  # needs a firewall rule
        (("10.0.0.0/8", "127.0.0.0/8"), "127.0.0.1", True),  # only loopback reaches it
        (("10.0.0.0/8",), "127.0.0.1", False),  # loopback reaches it but may not
    ],
)
def test_which_ports_keep_to_their_addresses_without_a_firewall(
    cidrs: tuple[str, ...] | None, configured: str, alone: bool
) -> None:
    assert published_alone(cidrs, configured) is alone


def test_where_ports_are_published() -> None:
    assert publish_address_for(None, "0.0.0.0", firewall=False) == "0.0.0.0"
    assert publish_address_for(("127.0.0.1/32",), "0.0.0.0", firewall=True) == "127.0.0.1"
    assert publish_address_for(("10.0.0.0/8",), "0.0.0.0", firewall=True) == "0.0.0.0"
    # a daemon that can't set the rule fails closed: loopback only
    assert publish_address_for(("10.0.0.0/8",), "0.0.0.0", firewall=False) == "127.0.0.1"
    assert publish_address_for(("0.0.0.0/0",), "0.0.0.0", firewall=False) == "0.0.0.0"


def test_a_runs_ssh_field() -> None:
    endpoint = SshEndpoint(host="gpu1.example.org", port=8422)
    assert SshEndpoint.from_record(endpoint.to_record()) == endpoint
    assert endpoint.for_run("run-1") == {
        "host": "gpu1.example.org",
        "port": 8422,
        "user": "run-1",
        "command": "ssh -p 8422 run-1@gpu1.example.org",
    }
    assert SshEndpoint(host="h", port=22).for_run("run-1")["command"] == "ssh run-1@h"
