"""The API fuzzed from its own OpenAPI document by schemathesis, against a real daemon on
loopback: no 5xx, every response as documented (status codes, content types and bodies),
requests that break the schema refused, missing or bad authentication refused. Bounded in
examples so the suite stays within its time. Jobs it makes only queue: a run filling the
node is started first, so no fuzzed image is ever pulled.

One check is left out: that every schema-valid request is accepted. Some rules are beyond a
schema (a recipe that must exist, a name that must match the path, a plan that must fit this
machine, NUL characters anywhere), and their 400/404/409/422 are documented answers."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import ALICE, system_daemon
from tests.support import TEST_IMAGE, VENV_BIN, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]
EXAMPLES = 12  # per operation, in each phase


# A request that breaks the schema may also be refused as too large (413: bodies over 1 MiB);
# and the check that every schema-valid request is accepted is off (see above).
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
"""


@pytest.fixture
def fuzzed_daemon(
    users: None, podman_socket: Path, test_image: str, shared_dir: Path
) -> Iterator[Daemon]:
    cpus = os.cpu_count() or 1
    config = (
        # failed authentications are what the fuzzer sends on purpose, many: not slowed here
        f"auth_free_failures = 1000000\n[plans.whole-node]\nmemory_mb = 64\ncpus = {cpus}\n"
    )
    with system_daemon(shared_dir, podman_socket, config) as d:
        yield d


def fuzz(daemon: Daemon, tmp_path: Path, *, mode: str, examples: int) -> None:
    """schemathesis against the daemon's own document, as alice with a token of hers."""
    token = daemon.request("POST", "/v1/tokens", {"name": "fuzz"}, user=ALICE).body["secret"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    st = shutil.which("st", path=str(VENV_BIN)) or str(VENV_BIN / "st")
    fuzzed = subprocess.run(
        [
            st, "--config-file", str(config), "run", f"{daemon.url}/v1/openapi.json",
            "--url", daemon.url, "-H", f"Authorization: Bearer {token}", "--mode", mode,
            "--checks", "all", "--exclude-checks", "positive_data_acceptance",
            "--max-examples", str(examples), "--workers", "2",
            "--phases", "examples,fuzzing", "--request-timeout", "30", "--no-color",
            "--seed", "14",
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = fuzzed.stdout[-12000:] + fuzzed.stderr[-2000:]
    if mode == "negative" and fuzzed.returncode != 0:
        # an operation with nothing to break (no parameters, free-form path ids) has no
        # request that breaks its schema to give: schemathesis calls that an error, and it is
        # no failure of the API. Any check that failed is.
        assert "FAILURES" not in fuzzed.stdout, output
        kinds = set(re.findall(r"_{3,} [A-Z]+ /\S* _{3,}\n(.+)\n", fuzzed.stdout))
        assert kinds and kinds <= {"Failed Health Check", "Schema Error"}, output
        return
    assert fuzzed.returncode == 0, output


def test_the_api_keeps_its_schema_under_fuzzing(fuzzed_daemon: Daemon, tmp_path: Path) -> None:
    """As alice, with her token: what she does stays hers (root's run, which fills the node,
    is beyond her reach, so nothing she makes ever starts)."""
    daemon = fuzzed_daemon
    blocker = daemon.submit(image=TEST_IMAGE, command=["sleep", "3600"], plan="whole-node")
    daemon.wait_status(blocker["latestRunId"], {"running"})
    fuzz(daemon, tmp_path, mode="all", examples=EXAMPLES)
    assert daemon.run(blocker["latestRunId"])["status"] == "running"
    containers = subprocess.run(
        ["podman", "ps", "-aq", "--filter", "label=io.jobd.managed=true"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    assert len([c for c in containers if daemon._is_mine(c)]) == 1, "only root's run started"


# what a request could change: every table of records (the audit log records the attempts)
RECORDS = ("jobs", "job_labels", "runs", "run_events", "recipes", "volumes", "uploads", "tokens")


def records(daemon: Daemon) -> dict[str, int]:
    db = sqlite3.connect(f"file:{daemon.data_dir / 'jobd.db'}?mode=ro", uri=True)
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in RECORDS}
    finally:
        db.close()


def test_rejected_requests_change_nothing(fuzzed_daemon: Daemon, tmp_path: Path) -> None:
    """Only requests that break the schema (schemathesis' negative mode), each of which must
    be refused: afterwards every table of records holds what it held before, but for the
    token the fuzzing is done with."""
    daemon = fuzzed_daemon
    existing = daemon.submit(image=TEST_IMAGE, command=["true"], name="before", network="none")
    daemon.wait_status(existing["latestRunId"])
    before = records(daemon)
    fuzz(daemon, tmp_path, mode="negative", examples=EXAMPLES // 2)
    assert records(daemon) == {**before, "tokens": before["tokens"] + 1}, "only fuzz's token"
