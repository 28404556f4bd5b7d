"""Runs' published ports kept to their jobs' `allowedIps` (jobd/node/firewall.py's rules),
where a job allows more than loopback and less than everyone (other cases need no rule:
jobd/domain/ssh.py's `published_alone`). A run's rule is put in place between the creation
of its container (when podman has picked its host ports) and its start, so no connection
from elsewhere reaches it first; each step drops the rules of runs that have ended and puts
back those of running runs found after a restart. Only a daemon that is root with rootful
podman sets rules; another publishes such runs' ports on loopback instead (launch.py)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import shutil

from jobd.config import Config
from jobd.domain.engine import RuntimeInfo
from jobd.domain.jobs import JobSpec
from jobd.domain.runs import Run
from jobd.domain.ssh import published_alone
from jobd.errors import RuntimeFailure
from jobd.node.firewall import FirewallError, PortRule, guard_ports, ports_chain
from jobd.runtime.contract import ContainerRuntime, Handle

log = logging.getLogger(__name__)


class PortGuard:
    def __init__(self, *, runtime: ContainerRuntime, config: Config, info: RuntimeInfo) -> None:
        self.runtime = runtime
        self.config = config
        self.enabled = (
            not info.rootless and os.geteuid() == 0 and shutil.which("iptables") is not None
        )
        self.chain = ports_chain(config.data_dir)
        self._rules: dict[str, tuple[PortRule, ...]] = {}  # by run
        self._applied: list[PortRule] | None = None  # None: not yet this start
        self._lock = asyncio.Lock()

    def needs_rules(self, spec: JobSpec | None) -> bool:
        return (
            spec is not None
            and bool(spec.ports)
            and not published_alone(spec.allowed_ips, self.config.publish_address)
        )

    async def before_start(self, run: Run, handle: Handle) -> None:
        """The run's rules in place, its host ports read from its created container.
        RuntimeFailure when they can't be: the run must not start unguarded."""
        if not self.enabled or not self.needs_rules(run.spec):
            return
        assert run.spec is not None and run.spec.allowed_ips is not None
        state = await self.runtime.inspect(handle)
        ports = {_host_port(address) for address in state.endpoints.values()}
        if not ports:
            raise RuntimeFailure("its published ports have no host port yet: not started")
        rules = _rules(ports, run.spec.allowed_ips)
        for other, held in list(self._rules.items()):  # a port freed by an ended run, reused
            if ports & {r.host_port for r in held}:
                del self._rules[other]
        self._rules[run.id] = rules
        await self._apply()

    async def step(self, active: list[Run]) -> None:
        """The rules of the runs still active, and of running ones not yet seen (found again
        after a restart), applied when they changed."""
        if not self.enabled:
            return
        by_id = {r.id: r for r in active}
        for run_id in [r for r in self._rules if r not in by_id]:
            del self._rules[run_id]
        for run in active:
            if run.id not in self._rules and run.endpoints and self.needs_rules(run.spec):
                assert run.spec is not None and run.spec.allowed_ips is not None
                ports = {_host_port(a) for a in run.endpoints.values()}
                self._rules[run.id] = _rules(ports, run.spec.allowed_ips)
        try:
            await self._apply()
        except RuntimeFailure as e:
            log.error("%s", e)

    async def _apply(self) -> None:
        async with self._lock:
            wanted = sorted(
                (r for held in self._rules.values() for r in held), key=lambda r: r.host_port
            )
            if wanted == self._applied:
                return
            try:
                await asyncio.to_thread(guard_ports, self.chain, wanted)
            except FirewallError as e:
                self._applied = None  # tried again at the next step
                raise RuntimeFailure(f"published ports' firewall rules: {e}") from e
            self._applied = wanted
            log.debug("published ports guarded: %s", [r.host_port for r in wanted])


def _host_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _rules(ports: set[int], cidrs: tuple[str, ...]) -> tuple[PortRule, ...]:
    # podman publishes on IPv4 here: the IPv6 networks have nothing to allow
    sources = tuple(c for c in cidrs if ipaddress.ip_network(c).version == 4)
    return tuple(PortRule(host_port=p, sources=sources) for p in sorted(ports))
