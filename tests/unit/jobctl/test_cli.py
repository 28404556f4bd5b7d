"""jobctl end to end against a fake jobd: a real HTTP server on a Unix socket (or loopback TCP)
that answers from a script, so the transport, errors, exit statuses and query strings are real."""

from __future__ import annotations

import hashlib
import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner, Result

from jobctl import waiting
from jobctl.cli import main
from jobctl.commands import control

HANG = object()  # a followed log that jobd never ends


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeJobd:
    """Answers (method, path) from a script; the last answer for a route repeats."""

    answers: dict[tuple[str, str], list[tuple[int, Any]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def on(self, method: str, path: str, *answers: tuple[int, Any]) -> None:
        self.answers[(method, path)] = list(answers)

    def answer(self, method: str, path: str) -> tuple[int, Any]:
        queue = self.answers.get((method, path))
        if not queue:
            return 404, {"error": {"code": "not_found", "message": f"no route {path}"}}
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]


def handler_for(fake: FakeJobd) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            fake.seen.append(
                Seen(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    parts.query,
                    dict(self.headers),
                    _decoded(raw, self.headers.get("Content-Type")),
                )
            )
            status, body = fake.answer(self.command, parts.path)
            if body is HANG:
                self._hang()
            elif isinstance(body, str):
                self._send(status, body.encode(), "text/plain")
            else:
                self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, data: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _hang(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            line = b'{"stream": "stdout", "text": "hi"}\n'
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            fake.release.wait(10)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a Unix peer has no address to log, and tests want quiet

    return Handler


def _decoded(raw: bytes, kind: str | None) -> Any:
    if kind == "application/octet-stream":
        return raw  # an upload: the file as sent
    return json.loads(raw) if raw else None


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake() -> FakeJobd:
    return FakeJobd()


def _serving(server: socketserver.BaseServer, fake: FakeJobd) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def sock(fake: FakeJobd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("JOBD_URL", "JOBD_TOKEN", "JOBD_SOCKET", "JOBD_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "jobd.sock"
    server = UnixServer(str(path), handler_for(fake))
    yield from (path for _ in _serving(server, fake))


def jobctl(sock: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--socket", str(sock), *args])


def job(status: str = "pending") -> dict[str, Any]:
    return {
        "id": "job-1",
        "name": None,
        "image": "busybox",
        "status": status,
        "plan": "standard",
        "createdAt": "2024-05-01T10:00:00.000+00:00",
        "latestRunId": "run-1",
    }


def run(status: str, exit_code: int | None = None, kind: str | None = None) -> dict[str, Any]:
    reason = {"type": kind, "message": f"{kind} happened"} if kind else None
    return {
        "id": "run-1",
        "jobId": "job-1",
        "status": status,
        "exitCode": exit_code,
        "failureReason": reason,
        "createdAt": "2024-05-01T10:00:00.000+00:00",
    }


# -- run ------------------------------------------------------------------------------


def test_run_wait_prints_the_ids_and_exits_with_the_code(fake: FakeJobd, sock: Path) -> None:
    fake.on("POST", "/v1/jobs", (201, job()))
    fake.on("GET", "/v1/runs/run-1", (200, run("running")), (200, run("failed", 3, "exit_code")))
    result = jobctl(sock, "run", "--wait", "busybox", "--", "sh", "-c", "echo hi; exit 3")
    assert (result.exit_code, result.stdout) == (3, "job-1 run-1\n")
    assert result.stderr == "jobctl: run run-1 failed: exit_code: exit_code happened\n"
    assert fake.requests("POST", "/v1/jobs")[0].body == {
        "image": "busybox",
        "command": ["sh", "-c", "echo hi; exit 3"],
        "env": {},
        "labels": {},
    }
    assert len(fake.requests("GET", "/v1/runs/run-1")) == 2


def test_run_sends_every_option(fake: FakeJobd, sock: Path) -> None:
    fake.on("POST", "/v1/jobs", (201, job()))
    result = jobctl(
        sock,
        "run",
        "--plan",
        "pro",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--timeout",
        "1h30m",
        "--name",
        "n",
        "--label",
        "team=a",
        "--network",
        "none",
        "--project",
        "vision",
        "busybox",
    )
    assert result.exit_code == 0, result.output
    assert fake.requests("POST", "/v1/jobs")[0].body == {
        "image": "busybox",
        "env": {"A": "1", "B": "x=y"},
        "plan": "pro",
        "timeoutSeconds": 5400,
        "name": "n",
        "labels": {"team": "a"},
        "network": "none",
        "project": "vision",
    }
    assert "Authorization" not in fake.requests("POST", "/v1/jobs")[0].headers


def test_run_wait_says_why_a_run_failed_without_an_exit_code(fake: FakeJobd, sock: Path) -> None:
    fake.on("POST", "/v1/jobs", (201, job()))
    fake.on("GET", "/v1/runs/run-1", (200, run("failed", 137, "oom_killed")))
    result = jobctl(sock, "run", "--wait", "busybox")
    assert result.exit_code == 137
    assert result.stdout == "job-1 run-1\n"
    assert result.stderr == "jobctl: run run-1 failed: oom_killed: oom_killed happened\n"


def test_run_wait_follows_the_retries_and_exits_as_the_last_attempt(
    fake: FakeJobd, sock: Path
) -> None:
    fake.on("POST", "/v1/jobs", (201, job()))
    first = {**run("failed", 3, "exit_code"), "retriedBy": "run-2"}
    second = {**run("succeeded", 0), "id": "run-2", "attempt": 2, "notBefore": None}
    fake.on("GET", "/v1/runs/run-1", (200, first))
    fake.on("GET", "/v1/runs/run-2", (200, second))
    result = jobctl(sock, "run", "--wait", "--attempts", "2", "--backoff", "1", "busybox")
    assert result.exit_code == 0, result.output
    assert "run run-1 failed with exit code 3; attempt 2 is run-2" in result.stderr
    assert fake.requests("POST", "/v1/jobs")[0].body["retry"] == {
        "maxAttempts": 2,
        "backoffSeconds": 1,
    }


def test_run_with_a_schedule_starts_no_run_and_says_when_it_will(
    fake: FakeJobd, sock: Path
) -> None:
    scheduled = {
        **job(),
        "latestRunId": None,
        "schedule": {"nextFireAt": "2024-05-01T10:05:00.000+00:00"},
    }
    fake.on("POST", "/v1/jobs", (201, scheduled))
    result = jobctl(
        sock,
        "run",
        "--schedule",
        "*/5 * * * *",
        "--timezone",
        "Europe/Paris",
        "--concurrency-policy",
        "replace",
        "--catch-up",
        "once",
        "--attempts",
        "3",
        "--retry-on-exit",
        "75",
        "--no-retry-on-infrastructure",
        "busybox",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("job-1 next 2024-05-01 ")
    body = fake.requests("POST", "/v1/jobs")[0].body
    assert body["schedule"] == "*/5 * * * *" and body["timezone"] == "Europe/Paris"
    assert body["concurrencyPolicy"] == "replace" and body["catchUp"] == "once"
    assert body["retry"] == {"maxAttempts": 3, "onExitCodes": [75], "onInfrastructure": False}
    assert jobctl(sock, "run", "--schedule", "* * * * *", "--wait", "busybox").exit_code == 2


def test_update_merges_retry_options_into_the_jobs_policy(fake: FakeJobd, sock: Path) -> None:
    current = {**job(), "retry": {"maxAttempts": 4, "backoffSeconds": 10, "onExitCodes": None}}
    fake.on("GET", "/v1/jobs/job-1", (200, current))
    fake.on("PATCH", "/v1/jobs/job-1", (200, current))
    assert jobctl(sock, "update", "job-1", "--backoff", "1m").exit_code == 0
    assert jobctl(sock, "update", "job-1", "--no-retry", "--no-schedule").exit_code == 0
    assert jobctl(sock, "update", "job-1", "--schedule", "0 3 * * *").exit_code == 0
    first, second, third = (r.body for r in fake.requests("PATCH", "/v1/jobs/job-1"))
    assert first == {"retry": {"maxAttempts": 4, "backoffSeconds": 60}}
    assert second == {"retry": None, "schedule": None}
    assert third == {"schedule": "0 3 * * *"}


def test_suspend_resume_schedule_and_status(fake: FakeJobd, sock: Path) -> None:
    schedule = {
        "schedule": "0 3 * * *",
        "timezone": "UTC",
        "concurrencyPolicy": "forbid",
        "catchUp": "skip",
        "suspend": False,
        "nextFireAt": "2024-05-02T03:00:00.000+00:00",
        "lastTick": {"at": "2024-05-01T03:00:00.000+00:00", "runId": "run-1", "note": "started"},
    }
    scheduled = {**job(), "schedule": schedule}
    fake.on("PATCH", "/v1/jobs/job-1", (200, scheduled))
    fake.on("GET", "/v1/jobs", (200, {"jobs": [scheduled], "nextCursor": None}))
    status = {
        "jobId": "job-1",
        "status": "succeeded",
        "latestRun": {**run("succeeded", 0), "trigger": "schedule"},
        "runCounts": {"succeeded": 3, "failed": 1, "pending": 0},
        "totalRuns": 4,
        "schedule": schedule,
    }
    fake.on("GET", "/v1/jobs/job-1/status", (200, status))
    assert jobctl(sock, "suspend", "job-1").stdout == "job-1 suspended\n"
    assert jobctl(sock, "resume", "job-1").stdout.startswith("job-1 next 2024-05-02 ")
    bodies = [r.body for r in fake.requests("PATCH", "/v1/jobs/job-1")]
    assert bodies == [{"suspend": True}, {"suspend": False}]
    table = jobctl(sock, "schedule").stdout.splitlines()
    assert table[0].split()[:4] == ["JOB", "NAME", "SCHEDULE", "TIMEZONE"]
    assert "0 3 * * *" in table[1] and "run-1" in table[1]
    assert fake.requests("GET", "/v1/jobs")[0].query == {"scheduled": ["true"]}
    text = jobctl(sock, "status", "job-1").stdout
    assert "run-1 (schedule)" in text and "4: succeeded=3 failed=1" in text
    assert "0 3 * * * (UTC), concurrency forbid, catch-up skip" in text


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--timeout", "5x"], "--timeout"),
        (["--env", "NOEQUALS"], "--env"),
        (["--label", "=v"], "--label"),
        (["--network", "host"], "--network"),
    ],
)
def test_bad_options_are_usage_errors(sock: Path, args: list[str], option: str) -> None:
    result = jobctl(sock, "run", *args, "busybox")
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.stderr


def ndjson(*lines: tuple[str, str]) -> str:
    """A log as the API's JSON lines: (stream, text) each."""
    return "".join(
        json.dumps({"time": "2024-05-01T10:00:00.5Z", "stream": stream, "text": text}) + "\n"
        for stream, text in lines
    )


def test_follow_streams_then_exits_like_wait(fake: FakeJobd, sock: Path) -> None:
    fake.on("POST", "/v1/jobs", (201, job()))
    fake.on("GET", "/v1/runs/run-1/logs", (200, ndjson(("stdout", "a"), ("stderr", "b"))))
    fake.on("GET", "/v1/runs/run-1", (200, run("succeeded", 0)))
    result = jobctl(sock, "run", "--follow", "busybox")
    # stdout is the run's: the ids go to stderr, before its stderr
    assert (result.exit_code, result.stdout, result.stderr) == (0, "a\n", "job-1 run-1\nb\n")
    assert fake.requests("GET", "/v1/runs/run-1/logs")[0].query == {
        "follow": ["true"],
        "format": ["ndjson"],
    }


def test_follow_ends_a_log_that_outlives_its_run(
    fake: FakeJobd, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiting, "LOG_GRACE", 0.2)
    fake.on("POST", "/v1/jobs", (201, job()))
    fake.on("GET", "/v1/runs/run-1/logs", (200, HANG))
    fake.on("GET", "/v1/runs/run-1", (200, run("running")), (200, run("failed", 2, "exit_code")))
    result = jobctl(sock, "run", "--follow", "busybox")
    assert (result.exit_code, result.stdout) == (2, "hi\n")
    assert result.stderr == (
        "job-1 run-1\njobctl: run run-1 failed: exit_code: exit_code happened\n"
    )


# -- errors ---------------------------------------------------------------------------


def test_api_errors_print_the_daemons_message(fake: FakeJobd, sock: Path) -> None:
    message = "run run-1 already ended (failed); nothing to cancel"
    fake.on(
        "POST", "/v1/runs/run-1/cancel", (409, {"error": {"code": "conflict", "message": message}})
    )
    result = jobctl(sock, "cancel", "run-1")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"jobctl: {message}\n")


def test_a_missing_daemon_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nobody.sock"
    result = jobctl(missing, "ls")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"jobctl: can't connect to jobd at socket {missing}")
    assert "is jobd running?" in result.stderr


def test_errors_that_are_not_json_still_read(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/plans", (500, "boom"))
    result = jobctl(sock, "plans")
    assert (result.exit_code, result.stderr) == (
        1,
        "jobctl: HTTP 500 Internal Server Error: boom\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rerun", "run-1"], "expected a job id"),
        (["update", "run-0199ab", "--env", "A=1"], "expected a job id"),
        (["logs", ""], "give an id"),
    ],
)
def test_ids_of_the_wrong_kind_are_usage_errors(sock: Path, args: list[str], message: str) -> None:
    result = jobctl(sock, *args)
    assert result.exit_code == 2
    assert message in result.stderr


# -- reading --------------------------------------------------------------------------


def test_ls_encodes_its_filters_and_follows_pages(fake: FakeJobd, sock: Path) -> None:
    fake.on(
        "GET",
        "/v1/jobs",
        (200, {"jobs": [job()], "nextCursor": "c+1"}),
        (200, {"jobs": [job("running")], "nextCursor": None}),
    )
    result = jobctl(
        sock,
        "ls",
        "--label",
        "a=1",
        "--label",
        "b=x y",
        "--status",
        "running",
        "--limit",
        "1",
        "--all",
        "--json",
    )
    assert result.exit_code == 0, result.output
    first, second = fake.requests("GET", "/v1/jobs")
    assert first.raw_query == "status=running&label=a%3D1&label=b%3Dx+y&limit=1"
    assert second.query["cursor"] == ["c+1"]
    assert [j["status"] for j in json.loads(result.stdout)["jobs"]] == ["pending", "running"]


def test_ls_table(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/jobs", (200, {"jobs": [job()], "nextCursor": None}))
    result = jobctl(sock, "ls")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["JOB", "NAME", "IMAGE", "STATUS", "CREATED"]
    assert lines[1].split()[:4] == ["job-1", "-", "busybox", "pending"]
    assert lines[1].endswith(" ago"), "times relative to now"
    assert result.stderr == "", "nothing more to say when every row is shown"


def test_ls_fits_100_columns_and_wide_shows_everything(fake: FakeJobd, sock: Path) -> None:
    long = {
        **job("failed"), "id": "job-01a23e8b95f2be56fd6ddba0a2373914", "name": "n" * 40,
        "image": "registry.example.com/team/trainer:" + "x" * 30, "command": ["sh", "-c", "exit 3"],
        "latestRun": {
            "exitCode": 3, "failureReason": {"type": "exit_code"}, "runningSeconds": 75.2,
        },
    }  # fmt: skip
    fake.on("GET", "/v1/jobs", *[(200, {"jobs": [long], "nextCursor": "more"})] * 2)
    narrow = jobctl(sock, "ls")
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 100, narrow.stdout
    assert "…" in narrow.stdout and long["id"] in narrow.stdout
    assert narrow.stderr == "jobctl: more jobs than shown: --all for every page, or --limit N\n"
    wide = jobctl(sock, "ls", "-o", "wide").stdout.splitlines()
    assert "EXIT/REASON" in wide[0] and "DURATION" in wide[0] and "COMMAND" in wide[0]
    assert long["image"] in wide[1] and "1m15s" in wide[1] and wide[1].endswith("sh -c 'exit 3'")


def test_ls_since_and_before_ask_for_a_creation_window(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/jobs", (200, {"jobs": [], "nextCursor": None}))
    assert jobctl(sock, "ls", "--since", "2h", "--before", "2024-05-01T12:00:00Z").exit_code == 0
    query = fake.requests("GET", "/v1/jobs")[0].query
    assert query["createdBefore"] == ["2024-05-01T12:00:00.000+00:00"]
    assert datetime.fromisoformat(query["createdAfter"][0]) < datetime.now(UTC)


def test_ls_all_users_asks_for_everyones_and_shows_whose(fake: FakeJobd, sock: Path) -> None:
    alices = {**job(), "owner": {"uid": 2001, "user": "alice", "via": "unix"}}
    fake.on("GET", "/v1/jobs", (200, {"jobs": [alices], "nextCursor": None}))
    lines = jobctl(sock, "ls", "--all-users").stdout.splitlines()
    assert fake.requests("GET", "/v1/jobs")[0].query == {"allUsers": ["true"]}
    assert lines[0].split()[:2] == ["USER", "JOB"]
    assert lines[1].split()[:3] == ["alice", "job-1", "-"]


def test_logs_of_a_job_are_its_latest_runs(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/jobs/job-1", (200, job()))
    fake.on("GET", "/v1/runs/run-1/logs", (200, ndjson(("stdout", "hi"))))
    result = jobctl(
        sock,
        "logs",
        "job-1",
        "--since",
        "2024-05-01T12:00:00+02:00",
        "--tail",
        "5",
        "--grep",
        "a&b",
    )
    assert (result.exit_code, result.stdout) == (0, "hi\n")
    seen = fake.requests("GET", "/v1/runs/run-1/logs")[0]
    assert seen.query == {
        "format": ["ndjson"],
        "since": ["2024-05-01T10:00:00.000+00:00"],
        "tail": ["5"],
        "filter": ["a&b"],
    }
    assert "%2B00%3A00" in seen.raw_query  # a raw '+' would reach the daemon as a space


def test_logs_json_is_ndjson(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/runs/run-1/logs", (200, '{"text": "hi"}\n'))
    result = jobctl(sock, "logs", "--json", "-f", "run-1")
    assert result.stdout == '{"text": "hi"}\n'
    assert fake.requests("GET", "/v1/runs/run-1/logs")[0].query == {
        "format": ["ndjson"],
        "follow": ["true"],
    }


def test_show_run_has_its_events(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/runs/run-1", (200, run("failed", 3, "exit_code")))
    events = [
        {"at": "2024-05-01T10:00:00.000+00:00", "from": None, "to": "pending", "detail": "created"}
    ]
    fake.on("GET", "/v1/runs/run-1/events", (200, {"events": events}))
    text = jobctl(sock, "show", "run-1").stdout
    assert "failure:" in text and "exit_code: exit_code happened" in text
    assert text.splitlines()[-1].split()[-3:] == ["-", "pending", "created"]
    assert json.loads(jobctl(sock, "show", "--json", "run-1").stdout)["exitCode"] == 3


def test_cancel_a_job_cancels_its_latest_run(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/jobs/job-1", (200, job()))
    fake.on("POST", "/v1/runs/run-1/cancel", (202, run("cancelling")))
    result = jobctl(sock, "cancel", "job-1")
    assert (result.exit_code, result.stdout) == (0, "run-1 cancelling\n")


@pytest.mark.parametrize(
    ("options", "body"),
    [
        ([], None),
        (["--grace", "30s"], {"graceSeconds": 30}),
        (["--grace", "2m"], {"graceSeconds": 120}),
        (["--force"], {"force": True}),
    ],
)
@pytest.mark.parametrize("command", ["cancel", "stop"])
def test_cancel_and_stop_send_their_grace(
    fake: FakeJobd, sock: Path, command: str, options: list[str], body: object
) -> None:
    fake.on("POST", f"/v1/runs/run-1/{command}", (202, run("cancelling")))
    result = jobctl(sock, command, "run-1", *options)
    assert result.exit_code == 0
    assert fake.requests("POST", f"/v1/runs/run-1/{command}")[0].body == body


def test_grace_and_force_do_not_go_together(fake: FakeJobd, sock: Path) -> None:
    result = jobctl(sock, "cancel", "run-1", "--grace", "5s", "--force")
    assert result.exit_code == 2 and "give one" in result.output
    assert fake.requests("POST", "/v1/runs/run-1/cancel") == []


def selection(fake: FakeJobd) -> None:
    """One job labelled a=b with a running, a pending and an ended run."""
    fake.on("GET", "/v1/jobs", (200, {"jobs": [job("running")], "nextCursor": None}))
    runs = [{**run(status), "id": f"run-{n}"} for n, status in
            enumerate(["running", "pending", "succeeded"], start=1)]  # fmt: skip
    fake.on("GET", "/v1/jobs/job-1/runs", (200, {"runs": runs, "nextCursor": None}))
    for n in (1, 2):
        fake.on("POST", f"/v1/runs/run-{n}/cancel", (202, {**run("cancelling"), "id": f"run-{n}"}))


@pytest.mark.parametrize(("answer", "cancelled"), [("n\n", []), ("y\n", ["run-1", "run-2"])])
def test_a_selection_of_several_is_confirmed_on_a_terminal(
    fake: FakeJobd,
    sock: Path,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    cancelled: list[str],
) -> None:
    selection(fake)
    monkeypatch.setattr(control, "on_terminal", lambda: True)
    result = CliRunner().invoke(
        main, ["--socket", str(sock), "cancel", "--label", "a=b"], input=answer
    )
    assert "run-1 running" in result.stderr and "Cancel these 2 runs?" in result.stderr
    posted = [s.path.split("/")[3] for s in fake.seen if s.method == "POST"]
    assert (result.exit_code, posted) == (0 if cancelled else 1, cancelled)
    assert fake.requests("GET", "/v1/jobs")[0].query["label"] == ["a=b"]


def test_without_a_terminal_or_with_yes_a_selection_is_not_asked(
    fake: FakeJobd, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    selection(fake)
    result = jobctl(sock, "cancel", "--name", "nightly", "--status", "pending")
    assert (result.exit_code, result.stdout) == (0, "run-2 cancelling\n")
    assert fake.requests("GET", "/v1/jobs")[0].query["name"] == ["nightly"]
    monkeypatch.setattr(control, "on_terminal", lambda: True)
    result = jobctl(sock, "cancel", "--label", "a=b", "--yes")
    assert (result.exit_code, result.stdout) == (0, "run-1 cancelling\nrun-2 cancelling\n")


def test_stop_of_an_ended_run_is_nothing_to_stop(fake: FakeJobd, sock: Path) -> None:
    refusal = {"error": {"code": "conflict", "message": "run run-1 already ended"}}
    fake.on("POST", "/v1/runs/run-1/stop", (409, refusal))
    fake.on("GET", "/v1/runs/run-1", (200, run("succeeded", 0)))
    result = jobctl(sock, "stop", "run-1")
    assert (result.exit_code, result.stdout) == (0, "run-1 succeeded\n")
    assert result.stderr == "jobctl: run run-1 already ended: nothing to stop\n"


def test_logs_split_the_streams_and_put_times_first(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/runs/run-1/logs", (200, ndjson(("stdout", "out"), ("stderr", "err"))))
    result = jobctl(sock, "logs", "-t", "run-1")
    assert result.stdout == "2024-05-01T10:00:00.5Z out\n"
    assert result.stderr == "2024-05-01T10:00:00.5Z err\n"


def test_a_name_that_is_no_job_is_tried_as_a_run_prefix(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/runs/0199ab", (200, run("failed", 3, "exit_code")))
    fake.on("GET", "/v1/jobs/job-1/runs", (200, {"runs": [run("failed", 3)], "nextCursor": None}))
    result = jobctl(sock, "runs", "0199ab")
    assert result.exit_code == 0 and "run-1" in result.stdout
    assert [s.path for s in fake.seen] == [
        "/v1/jobs/0199ab",  # 404: no job of that name or prefix
        "/v1/runs/0199ab",
        "/v1/jobs/job-1/runs",
    ]
    missing = jobctl(sock, "show", "nosuch")
    assert (missing.exit_code, missing.stderr) == (
        1,
        "jobctl: no job or run nosuch: neither a job's name nor a prefix of an id\n",
    )


def test_rerun_wait(fake: FakeJobd, sock: Path) -> None:
    fake.on("POST", "/v1/jobs/job-1/runs", (201, run("pending")))
    fake.on("GET", "/v1/runs/run-1", (200, run("succeeded", 0)))
    result = jobctl(sock, "rerun", "--wait", "job-1")
    assert (result.exit_code, result.stdout) == (0, "run-1\n")


def test_plans_mark_the_default(fake: FakeJobd, sock: Path) -> None:
    plans = [
        {
            "id": "starter",
            "memoryBytes": 512 * 1024**2,
            "cpus": 0.5,
            "pidsLimit": 4096,
            "pricePerMonth": 7.0,
        },
        {
            "id": "pro-max",
            "memoryBytes": 16 * 1024**3,
            "cpus": 8,
            "pidsLimit": 4096,
            "pricePerMonth": None,
        },
        {"id": "gpu-2", "memoryBytes": 32 * 1024**3, "cpus": 16, "pidsLimit": 4096,
         "gpus": 2, "minVramBytes": 24 * 1024**3},
        {"id": "infer", "memoryBytes": 8 * 1024**3, "cpus": 2, "pidsLimit": 4096,
         "gpus": 1, "minVramBytes": 10**10, "gpuShare": True},
    ]  # fmt: skip
    fake.on("GET", "/v1/plans", (200, {"plans": plans, "defaultPlan": "pro-max"}))
    lines = jobctl(sock, "plans").stdout.splitlines()
    assert lines[0].split() == ["PLAN", "MEMORY", "CPUS", "GPUS", "PIDS", "PRICE/MONTH"]
    assert lines[1].split() == ["starter", "512", "MiB", "0.5", "-", "4096", "$7.00"]
    assert lines[2].split() == ["pro-max", "(default)", "16", "GiB", "8", "-", "4096", "-"]
    assert lines[3].split()[:7] == ["gpu-2", "32", "GiB", "16", "2", "whole,", "24"]
    assert lines[4].split()[:7] == ["infer", "8", "GiB", "2", "1", "shared,", "9.3"]


def test_health_exits_1_unless_ok(fake: FakeJobd, sock: Path) -> None:
    doc = {
        "status": "degraded",
        "version": "0.1.0",
        "podman": {"reachable": False},
        "limits": {"enforced": False, "note": "no cgroup controllers"},
    }
    fake.on("GET", "/v1/health", (200, doc))
    result = jobctl(sock, "health")
    assert result.exit_code == 1
    assert "limits enforced:" in result.stdout and "no cgroup controllers" in result.stdout
    assert json.loads(jobctl(sock, "health", "--json").stdout) == doc


# -- TCP ------------------------------------------------------------------------------


@pytest.fixture
def url(fake: FakeJobd, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("JOBD_URL", "JOBD_TOKEN", "JOBD_SOCKET", "JOBD_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
    server.daemon_threads = True
    yield from (f"http://127.0.0.1:{server.server_port}" for _ in _serving(server, fake))


def test_tcp_sends_the_token_from_the_data_dir(fake: FakeJobd, url: str, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    fake.on("GET", "/v1/plans", (200, {"plans": [], "defaultPlan": "standard"}))
    result = CliRunner().invoke(
        main, ["plans", "--json"], env={"JOBD_URL": url, "JOBD_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert fake.requests("GET", "/v1/plans")[0].headers["Authorization"] == "Bearer s3cret"


def test_tcp_token_flag_wins(fake: FakeJobd, url: str, tmp_path: Path) -> None:
    fake.on("GET", "/v1/plans", (200, {"plans": [], "defaultPlan": "standard"}))
    result = CliRunner().invoke(
        main, ["--url", url, "--token", "t", "plans"], env={"JOBD_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert fake.requests("GET", "/v1/plans")[0].headers["Authorization"] == "Bearer t"


# -- GPUs and the node -----------------------------------------------------------------


def test_run_sends_explicit_requirements_priority_and_a_pending_limit(
    fake: FakeJobd, sock: Path
) -> None:
    fake.on("POST", "/v1/jobs", (201, job()))
    result = jobctl(
        sock,
        *("run", "--gpus", "2", "--vram-gb", "10", "--gpu-share", "--cpus", "4"),
        *("--ram-gb", "16", "--storage-gb", "50", "--priority", "5", "--max-pending", "2h"),
        "busybox",
    )
    assert result.exit_code == 0, result.output
    body = fake.requests("POST", "/v1/jobs")[0].body
    assert body["resources"] == {
        "cpuCount": 4,
        "gpuCount": 2,
        "minRamGb": 16,
        "minVramGb": 10,
        "minStorageGb": 50,
        "gpuShare": True,
    }
    assert (body["priority"], body["maxPendingSeconds"]) == (5, 7200)


NODE = {
    "capacity": {
        "cpus": 16,
        "memoryBytes": 64 << 30,
        "diskTotalBytes": 1 << 40,
        "diskFreeBytes": 1 << 39,
        "gpus": 2,
    },
    "allocated": {"cpus": 8, "memoryBytes": 32 << 30, "storageBytes": 0, "gpus": 1},
    "free": {
        "cpus": 8,
        "memoryBytes": 32 << 30,
        "storageBytes": 1 << 39,
        "cores": [8, 9],
        "gpus": 0,
    },
    "gpuSource": {"source": "nvml", "available": True, "error": None},
    "gpus": [
        {
            "index": "0",
            "uuid": "GPU-a",
            "name": "NVIDIA L4",
            "state": "exclusive",
            "memoryFreeBytes": 20 << 30,
            "memoryTotalBytes": 24 << 30,
            "availableBytes": 0,
            "allocatedTo": [{"runId": "run-1", "shared": False, "usedBytes": None}],
            "foreignPids": [],
            "foreignMemoryBytes": 0,
        },
        {
            "index": "1",
            "uuid": "GPU-b",
            "name": "NVIDIA L4",
            "state": "busy",
            "memoryFreeBytes": 20 << 30,
            "memoryTotalBytes": 24 << 30,
            "availableBytes": 20 << 30,
            "allocatedTo": [],
            "foreignPids": [4242],
            "foreignMemoryBytes": 4 << 30,
        },
    ],
    "runs": [
        {
            "runId": "run-1",
            "jobId": "job-1",
            "status": "running",
            "plan": "gpu-1",
            "cpus": 8,
            "memoryBytes": 32 << 30,
            "cpuSet": "0,1,2,3,4,5,6,7",
            "gpus": [{"index": "0", "uuid": "GPU-a"}],
        }
    ],
    "queue": {"pending": 3},
}


def test_node_shows_who_holds_what_and_the_gpus_others_use(fake: FakeJobd, sock: Path) -> None:
    fake.on("GET", "/v1/node", (200, NODE))
    result = jobctl(sock, "node")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    gpu_b = next(line for line in lines if line.startswith("1 ") and "GPU-b" in line)
    assert "busy" in gpu_b and "4242" in gpu_b
    holder = next(line for line in lines if line.startswith("run-1"))
    assert "0,1,2,3,4,5,6,7" in holder and "gpu-1" in holder
    assert any("queued runs" in line and "3" in line for line in lines)


def test_doctor_exits_1_when_a_check_fails(fake: FakeJobd, sock: Path) -> None:
    checks = [
        {"name": "gpus", "level": "ok", "message": "2 GPUs"},
        {"name": "cdi-specs", "level": "fail", "message": "cdiVersion 0.6.0 is newer"},
    ]
    fake.on("GET", "/v1/doctor", (200, {"ok": False, "checks": checks}))
    result = jobctl(sock, "doctor")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "cdiVersion 0.6.0" in result.stdout


# -- startup --------------------------------------------------------------------------


def test_startup_imports_neither_jobd_nor_tabulate() -> None:
    code = (
        "import sys, jobctl.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'jobd', 'tabulate'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


# -- inputs ---------------------------------------------------------------------------

SLUG_A = "upload-" + "a" * 32
SLUG_B = "upload-" + "b" * 32


def test_run_input_uploads_a_file_and_takes_a_slug_as_it_is(
    fake: FakeJobd, sock: Path, tmp_path: Path
) -> None:
    scene = tmp_path / "scene.blend"
    scene.write_bytes(b"a scene")
    digest = hashlib.sha256(b"a scene").hexdigest()
    fake.on("GET", "/v1/uploads", (200, {"uploads": []}))
    fake.on("POST", "/v1/uploads", (201, {"slug": SLUG_A, "name": "scene.blend"}))
    fake.on("POST", "/v1/jobs", (201, job()))
    result = jobctl(sock, "run", "--input", str(scene), "--input", SLUG_B, "busybox")
    assert result.exit_code == 0, result.output
    assert fake.requests("GET", "/v1/uploads")[0].query == {"sha256": [digest]}
    sent = fake.requests("POST", "/v1/uploads")[0]
    assert (sent.body, sent.query) == (b"a scene", {"name": ["scene.blend"]})
    assert fake.requests("POST", "/v1/jobs")[0].body["inputs"] == [SLUG_A, SLUG_B]


def test_run_input_reuses_what_jobd_keeps_of_the_file(
    fake: FakeJobd, sock: Path, tmp_path: Path
) -> None:
    scene = tmp_path / "scene.blend"
    scene.write_bytes(b"a scene")
    kept = [
        {"slug": SLUG_B, "name": "other.blend", "expiresAt": None},
        {"slug": SLUG_A, "name": "scene.blend", "expiresAt": None},
    ]
    fake.on("GET", "/v1/uploads", (200, {"uploads": kept}))
    fake.on("POST", "/v1/jobs", (201, job()))
    result = jobctl(sock, "run", "--input", str(scene), "busybox")
    assert result.exit_code == 0, result.output
    assert fake.requests("POST", "/v1/uploads") == [], "not sent again"
    assert fake.requests("POST", "/v1/jobs")[0].body["inputs"] == [SLUG_A]


@pytest.mark.parametrize(
    ("value", "message"),
    [("missing.bin", "no such file, nor an upload's slug"), (".", "not a file")],
)
def test_an_input_that_is_neither_a_file_nor_a_slug_is_a_usage_error(
    sock: Path, value: str, message: str
) -> None:
    result = jobctl(sock, "run", "--input", value, "busybox")
    assert result.exit_code == 2 and message in result.stderr


def test_update_replaces_or_clears_the_inputs(fake: FakeJobd, sock: Path) -> None:
    fake.on("PATCH", "/v1/jobs/job-1", (200, {**job(), "inputs": []}))
    assert jobctl(sock, "update", "job-1", "--no-inputs").exit_code == 0
    assert jobctl(sock, "update", "job-1", "--input", SLUG_A).exit_code == 0
    bodies = [s.body for s in fake.requests("PATCH", "/v1/jobs/job-1")]
    assert bodies == [{"inputs": []}, {"inputs": [SLUG_A]}]
    both = jobctl(sock, "update", "job-1", "--input", SLUG_A, "--no-inputs")
    assert both.exit_code == 2 and "--input and --no-inputs" in both.stderr


def test_ls_of_a_project_shows_whose_each_job_is(fake: FakeJobd, sock: Path) -> None:
    alices = {**job(), "owner": {"uid": 1001, "user": "alice", "via": "unix"}}
    bobs = {**job(), "id": "job-b", "owner": {"uid": 1002, "user": "bob", "via": "unix"}}
    fake.on("GET", "/v1/jobs", (200, {"jobs": [alices, bobs], "nextCursor": None}))
    lines = jobctl(sock, "ls", "--project", "vision").stdout.splitlines()
    assert fake.requests("GET", "/v1/jobs")[0].query["project"] == ["vision"]
    assert lines[0].split()[:2] == ["USER", "JOB"]
    assert [line.split()[0] for line in lines[1:]] == ["alice", "bob"]
