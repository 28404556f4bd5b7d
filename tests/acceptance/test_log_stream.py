"""Log streams through a real jobd and real containers: every line a run prints reaches a
syslog server on loopback as RFC 5424 with the run's fields, in order, stdout and stderr
told apart; an endpoint that stops reading drops lines (counted in /metrics) and never slows
the job or loses a line of its log. journald itself is tested under a real systemd
(tests/systemd)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import DaemonFactory
from tests.support import TERMINAL, TEST_IMAGE

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]
MESSAGE = re.compile(
    r'<(?P<pri>\d+)>1 \S+ \S+ jobd - (?P<stream>\S+) \[jobd@32473 run="(?P<run>[^"]*)"'
    r' job="(?P<job>[^"]*)" owner="(?P<owner>[^"]*)"\] (?P<text>.*)'
)


@pytest.fixture
def udp_server() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(10)
    yield server
    server.close()


def test_each_line_reaches_a_syslog_server_with_the_runs_fields(
    daemon_factory: DaemonFactory, udp_server: socket.socket
) -> None:
    port = udp_server.getsockname()[1]
    d = daemon_factory(
        config=f'[log_stream]\ntarget = "syslog"\naddress = "udp://127.0.0.1:{port}"\n'
    )
    job = d.submit(
        image=TEST_IMAGE,
        network="none",
        startCommand="echo one; echo two >&2; printf 'no newline'",
    )
    run_id = job["latestRun"]["id"]
    got = [MESSAGE.fullmatch(udp_server.recv(65536).decode()) for _ in range(3)]
    assert all(got), got
    lines = [(m["stream"], m["text"], int(m["pri"])) for m in got if m]
    assert lines == [("stdout", "one", 14), ("stderr", "two", 11), ("stdout", "no newline", 14)]
    for m in got:
        assert m is not None
        assert (m["run"], m["job"], m["owner"]) == (run_id, job["id"], "root")
    assert d.wait_status(run_id, TERMINAL)["status"] == "succeeded"
    metrics = d.get("/metrics").text
    assert 'jobd_log_stream_sent_lines_total{target="syslog"} 3.0' in metrics


def test_an_endpoint_that_stops_reading_drops_lines_and_never_slows_the_job(
    daemon_factory: DaemonFactory,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never reads
    try:
        port = listener.getsockname()[1]
        config = (
            f'[log_stream]\ntarget = "syslog"\naddress = "tcp://127.0.0.1:{port}"\n'
            "queue_lines = 100\n"
        )
        d = daemon_factory(config=config)
        began = time.monotonic()
        job = d.submit(image=TEST_IMAGE, network="none", startCommand="seq 1 200000")
        run = d.wait_status(job["latestRun"]["id"], TERMINAL, timeout=60)
        assert run["status"] == "succeeded"
        assert time.monotonic() - began < 30
        log = d.logs_text(run["id"])
        assert log.splitlines()[-1] == "200000" and len(log.splitlines()) == 200000
        metrics = d.get("/metrics").text
        dropped = re.search(
            r'jobd_log_stream_dropped_lines_total\{reason="queue_full",target="syslog"\} (\S+)',
            metrics,
        )
        assert dropped is not None and float(dropped[1]) > 0, metrics
        assert d.get("/v1/health").status == 200
    finally:
        listener.close()


def test_a_log_stream_with_a_remote_address_is_refused_at_start(
    daemon_factory: DaemonFactory,
) -> None:
    with pytest.raises(AssertionError, match="only loopback"):
        daemon_factory(config='[log_stream]\ntarget = "syslog"\naddress = "udp://10.1.2.3:514"\n')
