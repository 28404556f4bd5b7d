"""`jobd`: the daemon's phases.

startup  — bind the TCP port first (a port in use stops jobd before it touches anything),
           load the configuration, open the store, connect to podman (starting a private
           `podman system service` when none is configured), recover runs left by the last start
serve    — one aiohttp app on a Unix socket (0660) and, unless turned off, loopback TCP with
           users' tokens and signed requests; the supervisor, the exit watcher and the log
           pump run as named tasks; then READY=1 to systemd (Type=notify)
shutdown — on SIGTERM/SIGINT: STOPPING=1, stop accepting, let in-flight writes finish, leave
           containers running (the next start adopts them), stop the private podman service

`jobd install` and `jobd uninstall` (jobd/systemd/) are subcommands of the same command.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TextIO

import click
import uvloop
from aiohttp import web

from jobd import __version__
from jobd.api.app import create_app
from jobd.api.context import Services
from jobd.config import Config, load
from jobd.domain.progress import MarkerCounts
from jobd.errors import JobdError
from jobd.listening import bind_tcp
from jobd.logs.pump import LogPump
from jobd.logs.stream import LogStream
from jobd.node.firewall import HostGuard, guard
from jobd.node.gpus import gpu_source
from jobd.node.inventory import Inventory
from jobd.runtime.podman.client import PodmanRuntime
from jobd.runtime.podman.service import PodmanService
from jobd.scheduler.progress import ProgressBook
from jobd.scheduler.supervisor import Supervisor
from jobd.services import ssh
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
from jobd.services.telemetry import PassCount, Telemetry
from jobd.services.tokens import Tokens
from jobd.services.uploads import Uploads
from jobd.services.volumes import Volumes
from jobd.ssh.gateway import Gateway
from jobd.store import Store
from jobd.systemd import logformat
from jobd.systemd.commands import install, uninstall
from jobd.systemd.notify import Notifier
from jobd.web import add_dashboard

log = logging.getLogger("jobd")
MIN_TOKEN_LENGTH = 32
STOP_TASKS_SECONDS = 10


def ensure_secret(path: Path) -> str:
    """A secret kept in a 0600 file, made on first start: the TCP API's own bearer token,
    the key users' signing secrets are derived from. An empty or too-short one is replaced;
    a file others can read is made private again."""
    if path.exists():
        token = path.read_text().strip()
        if len(token) >= MIN_TOKEN_LENGTH:
            if path.stat().st_mode & 0o077:
                log.warning("%s was readable by others; made it 0600", path)
                path.chmod(0o600)
            return token
        path.unlink()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def lock_data_dir(data_dir: Path) -> TextIO:
    """One jobd per data directory: two would requeue and remove each other's runs."""
    lock = (data_dir / "jobd.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise JobdError(f"another jobd is already using {data_dir}") from None
    return lock


def prepare_runtime_dir(config: Config) -> None:
    """The socket's directory. A per-user one (possibly under /tmp) must be the user's own
    and private, so nobody else can plant a socket or a symlink there."""
    directory = config.runtime_dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o755 if config.system else 0o700)
    if config.system:
        return
    owner = directory.stat().st_uid
    if owner != os.getuid():
        raise JobdError(f"{directory} belongs to uid {owner}, not to this user")


def ensure_instance_id(path: Path) -> str:
    """This data directory's identity, on every container it creates, so that several jobd
    instances sharing one podman never adopt or remove each other's containers."""
    if path.exists():
        return path.read_text().strip()
    instance = secrets.token_hex(8)
    path.write_text(instance + "\n")
    return instance


def _socket_in_use(path: Path) -> bool:
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class Daemon:
    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier(None)
        self._listeners: list[socket.socket] = []
        self._gateway = Gateway(config.ssh, config.data_dir)  # listens once bound (if on)
        self.stop_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None
        self._book: ProgressBook | None = None  # runs' progress, as their markers say

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            services, supervisor = await self._startup(stack)
            runner = await self._serve(services)
            stack.push_async_callback(runner.cleanup)
            await self._gateway.start(services.ssh)
            self._start_tasks(supervisor, supervisor.pump)
            log.info("jobd %s ready", __version__)
            self.notifier.ready(f"serving on {self._where()}")
            await self.stop_requested.wait()
            log.info("shutting down: running containers are left running")
            self.notifier.stopping("stopping: running containers are left running")
            await runner.shutdown()
            await self._gateway.close()
            services.tokens.keep_nonces()
            await services.audit.close()
            log.debug("stopped serving")
            supervisor.close()
            await self._stop_tasks()
            log.debug("background tasks stopped")
            await supervisor.shutdown()  # before the runtime and the store close
            if self._book is not None:
                await self._book.write()  # the last second's markers
            log.debug("launches and stops settled")
        if self.failure is not None:
            raise SystemExit(f"jobd: a background task failed: {self.failure!r}")

    async def _startup(self, stack: AsyncExitStack) -> tuple[Services, Supervisor]:
        config = self.config
        self._listeners = bind_tcp(config.host, config.port) if config.tcp else []
        for listener in self._listeners:
            stack.callback(listener.close)
        self._gateway.bind()
        stack.callback(self._gateway.close_listeners)
        for directory in (config.data_dir, config.log_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        stack.callback(lock_data_dir(config.data_dir).close)
        prepare_runtime_dir(config)
        if _socket_in_use(config.socket):
            raise JobdError(f"another jobd is already serving {config.socket}")
        token = ensure_secret(config.token_file)
        signing_key = ensure_secret(config.data_dir / "signing-key").encode()
        store = await Store.open(config.database)
        stack.push_async_callback(store.close)
        self.notifier.status("starting podman")
        podman_socket = await self._podman_socket(stack)
        instance = ensure_instance_id(config.data_dir / "instance-id")
        runtime = PodmanRuntime(podman_socket, instance=instance, oci_runtime=config.podman_runtime)
        stack.push_async_callback(runtime.close)
        info = await runtime.info()
        if not info.limits_enforced:
            log.warning("%s", info.limits_note)
        host_guard = await asyncio.to_thread(guard, config, info)
        (log.info if host_guard.guarded else log.warning)("host access: %s", host_guard.note)
        inventory = Inventory(
            gpu_source(config.gpus.inventory_file),
            disk_path=Path(info.graph_root) if info.graph_root else config.data_dir,
        )
        await inventory.read()
        stream = LogStream(config.log_stream) if config.log_stream.target else None
        if stream is not None:
            stack.callback(stream.close)  # after the pump has let go
        self._book = ProgressBook(store)
        markers = self._book if config.logs.progress_markers else None
        pump = LogPump(config.log_dir, config.logs, stream=stream, markers=markers)
        stack.callback(pump.close)
        supervisor = Supervisor(
            store=store,
            runtime=runtime,
            pump=pump,
            config=config,
            inventory=inventory,
            info=info,
        )
        self.notifier.status("recovering the runs the last start left")
        await supervisor.recover()
        tokens = Tokens(
            store,
            config,
            daemon_token=token,
            signing_key=signing_key,
            nonce_file=config.data_dir / "nonces",
        )
        await tokens.load()
        return _services(config, store, runtime, supervisor, tokens, host_guard), supervisor

    async def _podman_socket(self, stack: AsyncExitStack) -> Path:
        if self.config.podman_socket is not None:
            return self.config.podman_socket
        service = PodmanService(
            self.config.data_dir / "podman", oci_runtime=self.config.podman_runtime
        )
        await service.start()
        stack.push_async_callback(service.stop)
        return service.socket

    async def _serve(self, services: Services) -> web.AppRunner:
        config = self.config
        # a log follower must not hold up shutdown for aiohttp's default 60 s
        app = create_app(services)
        add_dashboard(app)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        config.socket.unlink(missing_ok=True)
        await web.UnixSite(runner, str(config.socket)).start()
        _share_socket(config.socket, system=config.system)
        for listener in self._listeners:
            await web.SockSite(runner, listener).start()
        log.info("serving on %s", self._where())
        return runner

    def _where(self) -> str:
        config = self.config
        if config.tcp:
            return f"{config.socket} and http://{config.host}:{config.port}"
        return str(config.socket)

    def _start_tasks(self, supervisor: Supervisor, pump: LogPump) -> None:
        for name, work in (
            ("supervisor", supervisor.run()),
            ("exit-watcher", supervisor.watch_exits()),
            ("log-pump", pump.run()),
        ):
            self._tasks.append(self._supervised(name, work))
        if self._book is not None:
            self._tasks.append(self._supervised("progress-book", self._book.run()))
        supervisor.wake()

    def _supervised(self, name: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)

        def done(t: asyncio.Task[None]) -> None:
            if t.cancelled() or self.stop_requested.is_set():
                return
            self.failure = t.exception() or RuntimeError(f"{name} stopped")
            log.critical("background task %s died: %r", name, self.failure)
            self.stop_requested.set()

        task.add_done_callback(done)
        return task

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TASKS_SECONDS)
        for task in stuck:  # never hang the shutdown: say which one would not stop
            log.error(
                "background task %s did not stop within %ss", task.get_name(), STOP_TASKS_SECONDS
            )


def _services(
    config: Config,
    store: Store,
    runtime: PodmanRuntime,
    supervisor: Supervisor,
    tokens: Tokens,
    host_guard: HostGuard,
) -> Services:
    """What the edge is given: the services, wired to the store, the supervisor and, through
    callables only, the runtime."""
    jobs = Jobs(
        store,
        config,
        supervisor.inventory,
        supervisor.wake,
        supervisor.purge_soon,
        runtime.image_digest,
        rootless=supervisor.info.rootless,
    )
    audit = Audit(store)
    return Services(
        config=config,
        jobs=jobs,
        runs=Runs(
            store,
            supervisor.wake,
            supervisor.reason,
            default_grace=config.stop_grace_seconds,
        ),
        recipes=Recipes(store, jobs.plan, config.sharing.projects),
        logs=Logs(store, supervisor.pump),
        metrics=Metrics(store, config),
        telemetry=_telemetry(config, store, supervisor),
        volumes=Volumes(store, config),
        outputs=Outputs(store, config),
        uploads=Uploads(store, config),
        node=Node(
            config=config,
            store=store,
            inventory=supervisor.inventory,
            info=supervisor.info,
            runtime_info=runtime.info,
            scheduler_report=supervisor.report,
            host_guard=host_guard,
            latest=lambda: supervisor.sampler.latest,
        ),
        exec_sessions=ExecSessions(
            lambda target, command, tty: runtime.exec(target, command, tty=tty)
        ),
        tokens=tokens,
        audit=audit,
        sessions=Sessions(tokens),
        pruning=Pruning(supervisor.retention.prune, config.retention),
        ssh=ssh.SshAccess(store, ssh.Runtime(runtime.exec, runtime.files, runtime.connect), audit),
    )


def _telemetry(config: Config, store: Store, supervisor: Supervisor) -> Telemetry:
    """What /metrics reads at scrape time, the scheduler's parts through callables."""
    passes = supervisor.placer.passes
    return Telemetry(
        store=store,
        config=config,
        inventory=supervisor.inventory,
        passes=lambda: PassCount(count=passes.count, seconds=passes.total),
        log_bytes=lambda: supervisor.pump.bytes_taken,
        latest=lambda: supervisor.sampler.latest,
        log_stream=lambda: stream.totals() if (stream := supervisor.pump.stream) else None,
        markers=lambda: sink.counts() if (sink := supervisor.pump.markers) else MarkerCounts(),
    )


def _share_socket(path: Path, *, system: bool) -> None:
    """0660. The system daemon's socket goes to group jobd when that group exists, so its
    members can use jobctl; a user's own daemon is never shared this way."""
    if system:
        with contextlib.suppress(KeyError, PermissionError):
            os.chown(path, -1, grp.getgrnam("jobd").gr_gid)
    os.chmod(path, 0o660)


@contextlib.asynccontextmanager
async def _signals(daemon: Daemon) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop_requested.set)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _main(config: Config, notifier: Notifier) -> None:
    daemon = Daemon(config, notifier)
    async with _signals(daemon):
        await daemon.run()


LOG_FORMAT = click.option(
    "--log-format",
    default="auto",
    show_default=True,
    type=click.Choice(logformat.FORMATS),
    help="auto: journal under systemd (<N> priorities, no time), else text; json: one JSON"
    " object per line.",
)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML file.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Database and logs.")
@click.option("--socket", type=click.Path(path_type=Path), help="Unix socket to serve on.")
@click.option("--host", help="TCP address (default 127.0.0.1).")
@click.option(
    "--port", type=int, help="TCP port (default 8427; a user's own daemon 10000 + uid % 22000)."
)
@click.option("--no-tcp", is_flag=True, help="Serve on the Unix socket only.")
@click.option(
    "--podman-socket",
    type=click.Path(path_type=Path),
    help="Use this podman API socket instead of starting a private service.",
)
@click.option("--system", is_flag=True, help="System paths: /var/lib/jobd, /run/jobd.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@LOG_FORMAT
@click.version_option(__version__, prog_name="jobd")
@click.pass_context
def main(
    ctx: click.Context,
    config_file: Path | None,
    data_dir: Path | None,
    socket: Path | None,
    host: str | None,
    port: int | None,
    no_tcp: bool,
    podman_socket: Path | None,
    system: bool,
    log_level: str,
    log_format: str,
) -> None:
    """The jobd daemon: runs containerized jobs on Podman with plan limits and deadlines.
    Without a command it runs the daemon; `jobd install` makes it a systemd service."""
    if ctx.invoked_subcommand is not None:
        return
    notifier = Notifier.from_environment()  # before podman or anything else is started
    logformat.configure(log_level, log_format, sys.stderr)
    logging.getLogger("aiosqlite").setLevel(logging.INFO)  # it logs every statement at debug
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "socket": socket,
        "host": host,
        "port": port,
        "podman_socket": podman_socket,
        "tcp": False if no_tcp else None,
    }
    try:
        config = load(config_file=config_file, overrides=overrides, system=system)
        uvloop.run(_main(config, notifier))
    except JobdError as e:
        raise SystemExit(f"jobd: {e}") from None


main.add_command(install)
main.add_command(uninstall)
