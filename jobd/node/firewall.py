"""Jobs on podman's default network may not reach this host's own services: a connection a
container opens to the host (its bridge gateway, 10.88.0.1, or any other address of the
host) arrives in the host's INPUT chain, where one rule sends every new one from the bridge's
subnets to jobd's own chain, which refuses it (a TCP reset: the job sees "connection
refused" at once) unless its port is allowed. Replies to connections the host opened
(published ports) are let through. Traffic the host routes elsewhere (the internet) goes
through FORWARD and is not touched. iptables (its nf_tables flavour here) on the system
daemon's rootful podman only; a rootless daemon's runs use slirp4netns, which keeps the
host's loopback closed already.

Runs whose jobs name `allowedIps` have their published ports kept to those addresses by a
second chain (`guard_ports`), on the same rootful daemon only (a rootless one publishes such
ports on loopback, or refuses the job)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobd.config import Config
from jobd.domain.engine import RuntimeInfo

CHAIN = "JOBD-HOST"
PORTS_CHAIN = "JOBD-PORTS"  # and a daemon's suffix: runs' published ports kept to allowedIps


class FirewallError(Exception):
    """iptables refused a rule, or is not there."""


def guard_host(subnets: Iterable[str], allowed_ports: Iterable[int]) -> None:
    """Put jobd's chain in place (again): its rules replaced, one jump from INPUT per subnet
    (not added twice). Blocks: call it in a thread."""
    if not _iptables("-n", "-L", CHAIN, check=False):
        _iptables("-N", CHAIN)
    _iptables("-F", CHAIN)
    _iptables("-A", CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN")
    for port in sorted(set(allowed_ports)):
        for protocol in ("tcp", "udp"):
            _iptables("-A", CHAIN, "-p", protocol, "--dport", str(port), "-j", "RETURN")
    _iptables("-A", CHAIN, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
    _iptables("-A", CHAIN, "-j", "REJECT", "--reject-with", "icmp-port-unreachable")
    for subnet in subnets:
        jump = ("INPUT", "-s", subnet, "-j", CHAIN)
        if not _iptables("-C", *jump, check=False):
            _iptables("-I", *jump)


def unguard_host() -> None:
    """Take jobd's chain away, and every jump to it (host access allowed again)."""
    if not _iptables("-n", "-L", CHAIN, check=False):
        return
    for rule in _run("-S").stdout.splitlines():  # a rule's spec, as -S prints it, deletes it
        if rule.startswith("-A ") and rule.endswith(f"-j {CHAIN}"):
            _iptables("-D", *rule.split()[1:])
    _iptables("-F", CHAIN)
    _iptables("-X", CHAIN)


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRule:
    """A run's published host port, and the IPv4 networks that may connect to it."""

    host_port: int
    sources: tuple[str, ...]


_PORT_HOOKS = (("nat", ("PREROUTING", "OUTPUT")), ("filter", ("INPUT",)))


def ports_chain(data_dir: Path) -> str:
    """This daemon's chain for its runs' published ports: one per data directory, so that
    two daemons on one host (the system's and root's, or tests') never replace each other's
    rules."""
    return f"{PORTS_CHAIN}-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:8]}"


def guard_ports(chain: str, rules: Sequence[PortRule]) -> None:
    """Keep runs' published ports to their allowedIps: the chain in the nat table, first in
    PREROUTING and OUTPUT, lets an allowed connection on to podman's port forwarding (RETURN)
    and takes the others out of nat (ACCEPT: not forwarded to the container); those then
    reach the host itself, where the filter table's chain, first in INPUT, resets them (the
    client sees "connection refused" at once). Replaced whole each time; taken away, jumps
    and all, when there are no rules. Blocks."""
    if not rules:
        unguard_ports(chain)
        return
    for table, hooks in _PORT_HOOKS:
        if not _iptables("-t", table, "-n", "-L", chain, check=False):
            _iptables("-t", table, "-N", chain)
        _iptables("-t", table, "-F", chain)
        for hook in hooks:
            if not _iptables("-t", table, "-C", hook, "-j", chain, check=False):
                _iptables("-t", table, "-I", hook, "1", "-j", chain)
    for rule in rules:
        port = ("-p", "tcp", "--dport", str(rule.host_port))
        local = ("-m", "addrtype", "--dst-type", "LOCAL")
        for source in rule.sources:
            _iptables("-t", "nat", "-A", chain, *port, *local, "-s", source, "-j", "RETURN")
        _iptables("-t", "nat", "-A", chain, *port, *local, "-j", "ACCEPT")
        _iptables(
            "-A", chain, *port, "-m", "conntrack", "--ctstate", "NEW",
            "-j", "REJECT", "--reject-with", "tcp-reset",
        )  # fmt: skip


def unguard_ports(chain: str) -> None:
    """The chain gone from both tables, with its jumps (nothing when it is not there)."""
    for table, hooks in _PORT_HOOKS:
        if not _iptables("-t", table, "-n", "-L", chain, check=False):
            continue
        for hook in hooks:
            while _iptables("-t", table, "-D", hook, "-j", chain, check=False):
                pass
        _iptables("-t", table, "-F", chain)
        _iptables("-t", table, "-X", chain)


def _iptables(*args: str, check: bool = True) -> bool:
    done = _run(*args)
    if done.returncode != 0 and check:
        raise FirewallError(f"iptables {' '.join(args)}: {done.stderr.strip()}")
    return done.returncode == 0


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["iptables", "-w", "5", *args], capture_output=True, text=True, check=False
        )
    except OSError as e:
        raise FirewallError(f"iptables: {e.strerror or e}") from None


def guard(config: Config, info: RuntimeInfo) -> HostGuard:
    """Refuse runs' connections to the host, where this daemon can and is asked to; what
    `health` and `doctor` then say. Blocks: call it in a thread."""
    rootful = not info.rootless and os.getuid() == 0
    if config.network.host_access:
        if rootful:
            try:
                unguard_host()
            except FirewallError as e:
                return HostGuard(guarded=True, note=f"could not lift the guard: {e}")
        return HostGuard(guarded=False, note="jobs may reach the host (network.host_access)")
    if not rootful:
        return HostGuard(
            guarded=False,
            note="rootless podman (slirp4netns): the host's loopback is closed to jobs, its"
            " other addresses are not",
        )
    if not info.bridge_subnets:
        return HostGuard(guarded=True, note="podman has no default network to guard")
    try:
        guard_host(info.bridge_subnets, config.network.host_ports)
    except FirewallError as e:
        return HostGuard(guarded=False, note=f"jobs may reach the host: {e}")
    ports = ", ".join(map(str, config.network.host_ports))
    return HostGuard(
        guarded=True,
        note=f"jobs on the default network ({', '.join(info.bridge_subnets)}) may not connect"
        f" to the host{f', except to ports {ports}' if ports else ''}",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class HostGuard:
    guarded: bool  # new connections from runs to the host are refused
    note: str

    def to_api(self) -> dict[str, Any]:
        return {"guarded": self.guarded, "note": self.note}
