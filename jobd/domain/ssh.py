"""SSH into a job: the addresses a job may be reached from (`allowedIps`, CIDRs) and where
its runs are reached (`SshEndpoint`: the gateway's host and port, the run's id as the user).
The keys themselves are checked where a key parser is at hand (jobd/services/ssh.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jobd.errors import InvalidRequest

# a job that names no addresses is reached from this machine only
LOOPBACK = ("127.0.0.0/8", "::1/128")
MAX_SSH_KEYS = 32
MAX_ALLOWED_IPS = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidrs(values: Iterable[str]) -> tuple[str, ...]:
    """CIDRs as the API takes them ("10.0.0.0/8", "192.168.1.7", "::1"), in their normal
    form; InvalidRequest naming the first one that is not an address or a network."""
    found: list[str] = []
    for value in values:
        try:
            network = ipaddress.ip_network(value.strip(), strict=True)
        except ValueError as e:
            raise InvalidRequest(
                f"allowedIps: {value!r} is not an address or a network in CIDR form"
                f" (10.0.0.0/8, 192.168.1.7, ::1): {e}"
            ) from None
        if str(network) not in found:
            found.append(str(network))
    return tuple(found)


def parse_allowed(given: Iterable[str] | None) -> tuple[str, ...] | None:
    """A job's allowedIps as given (None: not given), in normal form."""
    return parse_cidrs(given) if given is not None else None


def cidr_list(cidrs: Iterable[str] | None) -> list[str] | None:
    return list(cidrs) if cidrs is not None else None


def networks(cidrs: Iterable[str] | None) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in (LOOPBACK if cidrs is None else cidrs))


def allows(cidrs: Iterable[str] | None, address: str) -> bool:
    """Whether a peer at `address` may reach a job that allows `cidrs` (None: loopback only).
    An IPv4 peer seen through an IPv6 socket (::ffff:a.b.c.d) is its IPv4 address."""
    try:
        peer = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    return any(peer.version == n.version and peer in n for n in networks(cidrs))


def loopback_only(cidrs: Iterable[str] | None) -> bool:
    """Whether every address `cidrs` allows is this machine's own loopback."""
    return all(n.is_loopback for n in networks(cidrs))


LOOPBACK_ADDRESSES = ("127.0.0.1", "::1", "localhost")


def published_alone(cidrs: tuple[str, ...] | None, publish_address: str) -> bool:
    """Whether a job's published ports keep to `cidrs` without a firewall rule: nothing is
    asked (None), only loopback is allowed (they are published on loopback then), or every
    address that can reach them is allowed."""
    if cidrs is None or loopback_only(cidrs):
        return True
    if publish_address in LOOPBACK_ADDRESSES:
        return allows(cidrs, "127.0.0.1")
    return any(n.prefixlen == 0 for n in networks(cidrs))


def publish_address_for(cidrs: tuple[str, ...] | None, configured: str, *, firewall: bool) -> str:
    """Where a run's ports are published: the daemon's address, but loopback when only
    loopback may reach them, or when they would need a firewall rule this daemon can't set
    (refused at submission; a daemon restarted without root fails closed)."""
    if cidrs is None or configured in LOOPBACK_ADDRESSES:
        return configured
    if loopback_only(cidrs) or not (firewall or published_alone(cidrs, configured)):
        return "127.0.0.1"
    return configured


@dataclass(frozen=True, slots=True, kw_only=True)
class SshEndpoint:
    """Where the gateway listens for a run, as a client writes it."""

    host: str
    port: int

    def to_record(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> SshEndpoint:
        return cls(host=str(data["host"]), port=int(data["port"]))

    def for_run(self, run_id: str) -> dict[str, Any]:
        """The run's `ssh` field: the user is the run's id."""
        port = "" if self.port == 22 else f"-p {self.port} "
        return {
            "host": self.host,
            "port": self.port,
            "user": run_id,
            "command": f"ssh {port}{run_id}@{self.host}",
        }
