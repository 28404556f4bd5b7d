"""The node and the daemon: the plans it offers, its health, what the node holds (CPUs,
memory, GPUs) and the doctor's checks."""

from __future__ import annotations

import click

from jobctl.commands.shared import show
from jobctl.connection import Connection, pass_connection
from jobctl.options import CONTEXT, json_option
from jobctl.render.layout import table
from jobctl.render.node import PLAN_HEADERS, doctor_details, health_details, node_details, plan_row


@click.command(context_settings=CONTEXT)
@json_option
@pass_connection
def plans(connection: Connection, *, as_json: bool) -> None:
    """List the plans: the resources and price of each."""
    doc = connection.client().get("/v1/plans")
    rows = (plan_row(plan, doc.get("defaultPlan")) for plan in doc["plans"])
    show(doc, as_json, lambda: table(PLAN_HEADERS, rows))


@click.command(context_settings=CONTEXT)
@json_option
@pass_connection
def health(connection: Connection, *, as_json: bool) -> None:
    """Show the daemon's health; exit 1 unless it is ok."""
    doc = connection.client().get("/v1/health")
    show(doc, as_json, lambda: health_details(doc))
    if doc.get("status") != "ok":
        click.get_current_context().exit(1)


@click.command(context_settings=CONTEXT)
@json_option
@pass_connection
def node(connection: Connection, *, as_json: bool) -> None:
    """Show the node: capacity, what each run holds, what is free, and the GPUs (with
    memory used by processes jobd did not start)."""
    doc = connection.client().get("/v1/node")
    show(doc, as_json, lambda: node_details(doc))


@click.command(context_settings=CONTEXT)
@json_option
@pass_connection
def doctor(connection: Connection, *, as_json: bool) -> None:
    """Check podman, limits, the GPU path (NVML, CDI specs, device nodes) and how jobd runs
    as a service (subordinate ids, the socket, free disk, the clock, the systemd unit,
    retention); say how to fix what is wrong, and exit 1 when a check fails."""
    doc = connection.client().get("/v1/doctor")
    show(doc, as_json, lambda: doctor_details(doc))
    if not doc.get("ok"):
        click.get_current_context().exit(1)
