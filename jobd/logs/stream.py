"""Log streams: every run's output lines, as the pump takes them in, forwarded to journald
(its native protocol, with the run's fields) or to a syslog endpoint (RFC 5424 over a Unix
datagram socket, or UDP or TCP on loopback), as a hosted platform sends a workspace's logs
to its log stream.

Forwarding never slows or blocks a job: the job writes to conmon's file as always, and the
pump only offers each line to a bounded queue; a sender thread drains it. When the queue is
full (the endpoint is slow, gone or refusing) the line is dropped and counted, and the count
is in /metrics (`jobd_log_stream_dropped_lines_total`). A lost endpoint is retried, at most
once a second; the lines meanwhile are dropped, not held."""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from jobd.config.tables import Endpoint, LogStreamSettings, endpoint
from jobd.logs.lines import LineJoiner, LogLine, LogQuery
from jobd.logs.run_log import RunLog

log = logging.getLogger(__name__)
JOURNAL_SOCKET = "/run/systemd/journal/socket"
MAX_TEXT_BYTES = 48 * 1024  # of one line's text in a message; a datagram must fit
RECONNECT_SECONDS = 1.0
SEVERITY = {"stdout": 6, "stderr": 3, "jobd": 5}  # info, err, notice
FACILITY_USER = 1
SD_ID = "jobd@32473"  # RFC 5424 structured data; 32473 is the PEN kept for examples


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFields:
    """Who a run's lines belong to, on each message."""

    run_id: str
    job_id: str = ""
    owner: str = ""


def _cut(text: str) -> bytes:
    data = text.encode()
    return data if len(data) <= MAX_TEXT_BYTES else data[:MAX_TEXT_BYTES] + b" [jobd: cut]"


def journal_message(fields: RunFields, line: LogLine, app_name: str) -> bytes:
    """journald's native datagram: KEY=value lines; a value with a newline in the binary
    form (KEY, newline, its length as 64-bit little-endian, the value, newline)."""
    entries = {
        "MESSAGE": _cut(line.text),
        "PRIORITY": str(SEVERITY.get(line.stream, 6)).encode(),
        "SYSLOG_IDENTIFIER": app_name.encode(),
        "JOBD_RUN_ID": fields.run_id.encode(),
        "JOBD_JOB_ID": fields.job_id.encode(),
        "JOBD_OWNER": fields.owner.encode(),
        "JOBD_STREAM": line.stream.encode(),
    }
    out = bytearray()
    for key, value in entries.items():
        if b"\n" in value:
            out += key.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
        else:
            out += key.encode() + b"=" + value + b"\n"
    return bytes(out)


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(fields: RunFields, line: LogLine, app_name: str, hostname: str) -> bytes:
    """RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG, with the run's
    fields as structured data and the stream as MSGID."""
    pri = FACILITY_USER * 8 + SEVERITY.get(line.stream, 6)
    stamp = line.time or datetime.now(UTC).isoformat(timespec="microseconds")
    data = (
        f'[{SD_ID} run="{_sd_value(fields.run_id)}" job="{_sd_value(fields.job_id)}"'
        f' owner="{_sd_value(fields.owner)}"]'
    )
    head = f"<{pri}>1 {_rfc3339(stamp)} {hostname} {app_name} - {line.stream} {data} "
    return head.encode() + _cut(line.text)


def _rfc3339(stamp: str) -> str:
    """conmon's RFC3339Nano, cut to the microseconds RFC 5424 allows."""
    if "." not in stamp:
        return stamp
    whole, rest = stamp.split(".", 1)
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{whole}.{rest[: min(digits, 6)]}{rest[digits:]}"


@dataclass(slots=True)
class StreamCounts:
    """Each counter written by one thread only: the pump's (full) or the sender's."""

    sent: int = 0
    dropped_full: int = 0  # the queue was full: the endpoint is slower than the jobs
    dropped_unsent: int = 0  # the endpoint could not be reached or refused the message
    error: str = ""  # the latest failure, for doctor

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_unsent


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamTotals:
    """What /metrics shows of the log stream."""

    target: str
    sent: int
    dropped_full: int
    dropped_unsent: int


class LogStream:
    """The sender: a bounded queue of messages and one thread writing them out."""

    def __init__(self, settings: LogStreamSettings) -> None:
        self.settings = settings
        self.counts = StreamCounts()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=settings.queue_lines)
        self._joiners: dict[str, LineJoiner] = {}
        self._fields: dict[str, RunFields] = {}
        self._hostname = socket.gethostname()
        self._encode = self._encoder()
        self._failed_at = -RECONNECT_SECONDS
        self._connection: _Connection | None = None  # the sender thread's
        self._stopping = False
        self._thread = threading.Thread(target=self._send_all, name="log-stream", daemon=True)
        self._thread.start()

    def _encoder(self) -> Callable[[RunFields, LogLine], bytes]:
        app = self.settings.app_name
        if self.settings.target == "journald":
            return lambda fields, line: journal_message(fields, line, app)
        return lambda fields, line: syslog_message(fields, line, app, self._hostname)

    def totals(self) -> StreamTotals:
        counts = self.counts
        return StreamTotals(
            target=self.settings.target,
            sent=counts.sent,
            dropped_full=counts.dropped_full,
            dropped_unsent=counts.dropped_unsent,
        )

    def track(self, fields: RunFields) -> None:
        self._fields[fields.run_id] = fields

    def forget(self, run_id: str) -> None:
        """The run's log has ended: a last line without its newline is sent too."""
        fields = self._fields.pop(run_id, None) or RunFields(run_id=run_id)
        joiner = self._joiners.pop(run_id, None)
        if joiner is not None:
            self._queue_lines(fields, joiner.ended())

    def offer(self, run_id: str, block: bytes) -> None:
        """Whole k8s-file lines the pump took in (called from its thread): each line
        queued, or dropped and counted when the queue is full. Never blocks."""
        if self._queue.full():  # the endpoint is behind: drop the block without parsing it
            self.counts.dropped_full += block.count(b"\n")
            self._joiners.pop(run_id, None)
            return
        fields = self._fields.get(run_id) or RunFields(run_id=run_id)
        joiner = self._joiners.setdefault(run_id, LineJoiner(LogQuery()))
        self._queue_lines(fields, joiner.lines(block))

    def _queue_lines(self, fields: RunFields, lines: Iterable[LogLine]) -> None:
        for line in lines:
            try:
                self._queue.put_nowait(self._encode(fields, line))
            except queue.Full:
                self.counts.dropped_full += 1

    def take(self, run_id: str, run_log: RunLog, start: int) -> None:
        """What the pump took into `run_log` since `start`, offered line by line (in the
        pump's thread, after its own work: only this reads the new bytes again)."""
        end = run_log.taken
        while start < end:
            at, data = run_log.read(start, end)
            if not data:
                return
            self.offer(run_id, data)
            start = at + len(data)

    def close(self) -> None:
        """Send what is queued (a second at most), then stop the thread; a sender stuck on
        an endpoint that does not read is cut off."""
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            self._stopping = True
            connection = self._connection
            if connection is not None:
                connection.abort()
        self._thread.join(timeout=2.0)

    # -- the sender thread --------------------------------------------------------------

    def _send_all(self) -> None:
        while not self._stopping and (message := self._queue.get()) is not None:
            if self._connection is None:
                self._connection = self._connect()
                if self._connection is None:
                    self.counts.dropped_unsent += 1
                    continue
            try:
                self._connection.send(message)
                self.counts.sent += 1
            except OSError as e:
                self._failed(f"sending: {e}")
                self.counts.dropped_unsent += 1
                self._connection.close()
                self._connection = None
        if self._connection is not None:
            self._connection.close()

    def _connect(self) -> _Connection | None:
        """A connection, or None while the last failure is under a second old."""
        if time.monotonic() - self._failed_at < RECONNECT_SECONDS:
            return None
        try:
            return _Connection.open(self.settings)
        except OSError as e:
            self._failed(f"connecting: {e}")
            return None

    def _failed(self, why: str) -> None:
        self._failed_at = time.monotonic()
        if self.counts.error != why:  # once per kind of failure, not once per line
            log.warning("log stream to %s: %s", self.settings.target, why)
        self.counts.error = why


class _Connection:
    """One socket to the endpoint; TCP messages framed by octet counting (RFC 6587)."""

    def __init__(self, sock: socket.socket, *, framed: bool) -> None:
        self.sock = sock
        self.framed = framed

    @classmethod
    def open(cls, settings: LogStreamSettings) -> _Connection:
        if settings.target == "journald":
            target = Endpoint(kind="unix", path=settings.address or JOURNAL_SOCKET)
        else:
            target = endpoint(settings.address)
        if target.kind == "tcp":
            sock = socket.create_connection((target.host, target.port), timeout=5.0)
            sock.settimeout(None)  # a slow reader fills the queue, not a timeout here
            return cls(sock, framed=True)
        family = socket.AF_UNIX
        if target.kind == "udp":
            family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.connect(target.path if target.kind == "unix" else (target.host, target.port))
        except OSError:
            sock.close()
            raise
        return cls(sock, framed=False)

    def send(self, message: bytes) -> None:
        if self.framed:
            self.sock.sendall(str(len(message)).encode() + b" " + message)
        else:
            self.sock.send(message)

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Unblock a send stuck on a peer that does not read (from another thread)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
