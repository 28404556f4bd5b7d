"""Log streams: the messages journald and syslog get, and the sender over real sockets
(a UDP server, a Unix datagram socket standing in for journald's, a TCP peer that never
reads): lines arrive with the run's fields, and a stuck endpoint drops and counts lines
without ever blocking the pump."""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobd.config.tables import LogStreamSettings, endpoint
from jobd.logs.lines import LogLine
from jobd.logs.stream import LogStream, RunFields, journal_message, syslog_message

FIELDS = RunFields(run_id="run-1", job_id="job-1", owner="alice")
STAMP = "2026-12-04T05:00:00.123456789Z"


def k8s(stream: str, text: str, flag: str = "F") -> bytes:
    return f"{STAMP} {stream} {flag} {text}\n".encode()


def eventually(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.01)


def journal_fields(datagram: bytes) -> dict[str, bytes]:
    """journald's native format read back, the binary form included."""
    fields: dict[str, bytes] = {}
    rest = datagram
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value
            rest = after
        else:
            (size,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + size]
            rest = after[8 + size + 1 :]
    return fields


def test_a_journal_message_carries_the_run_and_a_priority_by_stream() -> None:
    out = journal_fields(
        journal_message(FIELDS, LogLine(time=STAMP, stream="stdout", text="hello"), "jobd")
    )
    assert out["MESSAGE"] == b"hello"
    assert out["PRIORITY"] == b"6"
    assert out["JOBD_RUN_ID"] == b"run-1"
    assert out["JOBD_JOB_ID"] == b"job-1"
    assert out["JOBD_OWNER"] == b"alice"
    assert out["JOBD_STREAM"] == b"stdout"
    err = journal_fields(
        journal_message(FIELDS, LogLine(time=STAMP, stream="stderr", text="a\nb"), "jobd")
    )
    assert err["PRIORITY"] == b"3"
    assert err["MESSAGE"] == b"a\nb"  # the binary form keeps a newline in a value


def test_a_syslog_message_is_rfc5424_with_the_run_as_structured_data() -> None:
    owner = RunFields(run_id="run-1", job_id="job-1", owner='a"b]')
    line = LogLine(time=STAMP, stream="stderr", text="disk almost full")
    message = syslog_message(owner, line, "jobd", "host1").decode()
    assert message == (
        "<11>1 2026-12-04T05:00:00.123456Z host1 jobd - stderr"
        ' [jobd@32473 run="run-1" job="job-1" owner="a\\"b\\]"] disk almost full'
    )
    stdout = syslog_message(FIELDS, LogLine(time=STAMP, stream="stdout", text="x"), "j", "h")
    assert stdout.startswith(b"<14>1 ")


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("udp://10.0.0.5:514", "only loopback"),
        ("http://127.0.0.1:514", "use unix:"),
        ("udp://127.0.0.1", "use unix:"),
        ("unix:dev/log", "absolute path"),
    ],
)
def test_a_bad_syslog_address_is_refused_with_why(address: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        endpoint(address)
    settings = LogStreamSettings(target="syslog", address=address)
    assert problem in (settings.check() or "")


def test_settings_are_checked() -> None:
    assert LogStreamSettings().check() is None
    assert LogStreamSettings(target="journald").check() is None
    assert "journald or syslog" in (LogStreamSettings(target="kafka").check() or "")
    assert "positive" in (LogStreamSettings(target="journald", queue_lines=0).check() or "")


class Opened(list[LogStream]):
    """The streams a test opened, and the sockets it listens on: closed after it."""

    def __init__(self) -> None:
        super().__init__()
        self.closing: list[socket.socket] = []


@pytest.fixture
def stream_to() -> Iterator[Opened]:
    opened = Opened()
    yield opened
    for stream in opened:
        stream.close()
    for sock in opened.closing:
        sock.close()


def test_lines_reach_a_udp_syslog_server_joined_and_in_order(
    stream_to: Opened,
) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    stream_to.closing.append(server)
    port = server.getsockname()[1]
    stream = LogStream(LogStreamSettings(target="syslog", address=f"udp://127.0.0.1:{port}"))
    stream_to.append(stream)
    stream.track(FIELDS)
    stream.offer("run-1", k8s("stdout", "one") + k8s("stderr", "tw", "P"))
    stream.offer("run-1", k8s("stderr", "o"))  # a partial line ends in the next block
    got = [server.recv(65536).decode() for _ in range(2)]
    assert re.match(r"<14>1 \S+ \S+ jobd - stdout \[jobd@32473 run=\"run-1\".*\] one$", got[0])
    assert got[1].startswith("<11>1 ") and got[1].endswith("] two")
    eventually(lambda: stream.counts.sent == 2)  # counted just after the send
    assert stream.counts.dropped == 0


def test_journald_gets_native_datagrams_on_its_socket(stream_to: Opened, tmp_path: Path) -> None:
    path = tmp_path / "journal.socket"
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(str(path))
    journal.settimeout(5)
    stream_to.closing.append(journal)
    stream = LogStream(LogStreamSettings(target="journald", address=str(path)))
    stream_to.append(stream)
    stream.track(FIELDS)
    stream.offer("run-1", k8s("stdout", "to the journal"))
    fields = journal_fields(journal.recv(65536))
    assert fields["MESSAGE"] == b"to the journal"
    assert fields["JOBD_OWNER"] == b"alice"


def test_a_stuck_endpoint_drops_and_counts_lines_and_never_blocks(
    stream_to: Opened,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stream_to.closing.append(listener)
    port = listener.getsockname()[1]
    settings = LogStreamSettings(
        target="syslog", address=f"tcp://127.0.0.1:{port}", queue_lines=100
    )
    stream = LogStream(settings)
    stream_to.append(stream)
    block = b"".join(k8s("stdout", "x" * 1000) for _ in range(1000))
    began = time.monotonic()
    for _ in range(20):  # 20,000 lines of 1 KB to a peer that accepts and never reads
        stream.offer("run-1", block)
    assert time.monotonic() - began < 5
    assert stream.counts.dropped_full > 0
    assert stream.counts.sent + stream.counts.dropped_full + stream._queue.qsize() <= 20_000


def test_an_endpoint_that_is_not_there_counts_drops_and_says_why(
    stream_to: Opened, tmp_path: Path
) -> None:
    stream = LogStream(LogStreamSettings(target="journald", address=str(tmp_path / "none")))
    stream_to.append(stream)
    stream.offer("run-1", k8s("stdout", "lost"))
    eventually(lambda: stream.counts.dropped_unsent == 1)
    assert "connecting" in stream.counts.error
