"""What the edge is given: the services its handlers call, under the app's typed key; and what
it keeps itself (the throttle of failed authentications, the streaming connections open)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from jobd.api.streams import StreamSlots
from jobd.api.throttle import FailureThrottle
from jobd.config import Config
from jobd.services.audit import Audit
from jobd.services.exec import ExecSessions
from jobd.services.jobs import Jobs
from jobd.services.logs import Logs
from jobd.services.metrics import Metrics
from jobd.services.node import Node
from jobd.services.outputs import Outputs
from jobd.services.recipes import Recipes
from jobd.services.retention import Pruning
from jobd.services.runs import Runs
from jobd.services.sessions import Sessions
from jobd.services.ssh import SshAccess
from jobd.services.telemetry import Telemetry
from jobd.services.tokens import Tokens
from jobd.services.uploads import Uploads
from jobd.services.volumes import Volumes

MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    config: Config
    jobs: Jobs
    runs: Runs
    recipes: Recipes
    logs: Logs
    volumes: Volumes
    outputs: Outputs
    uploads: Uploads
    node: Node
    exec_sessions: ExecSessions
    tokens: Tokens  # users' API tokens, and who a TCP request is
    audit: Audit  # every state-changing request
    metrics: Metrics  # run metrics as sampled
    telemetry: Telemetry  # what /metrics shows
    sessions: Sessions  # the dashboard's logins
    pruning: Pruning  # finished runs pruned now (jobctl prune)
    ssh: SshAccess  # who the SSH gateway (jobd/ssh/, another edge) lets into which run


SERVICES = web.AppKey("services", Services)
THROTTLE = web.AppKey("throttle", FailureThrottle)
STREAMS = web.AppKey("streams", StreamSlots)
