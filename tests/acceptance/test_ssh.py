"""SSH into a persistent job, through the real daemon, podman and OpenSSH's own clients: a
command with its exit code, a shell on a terminal, scp both ways and sftp, `ssh -L` to a port
served inside the container; and the refusals, all alike: a wrong key, an unknown user,
another user's job, an address the job does not allow. Published ports kept to allowedIps
too. Each daemon gets a gateway port of its own (tests/conftest.py turns it off otherwise)."""

from __future__ import annotations

import fcntl
import os
import pty
import pwd
import select
import signal
import socket
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobd.node.firewall import ports_chain
from tests.acceptance.conftest import ALICE, BOB, call, submit
from tests.acceptance.test_rootless import USER as ROOTLESS_USER
from tests.acceptance.test_rootless import install_for, user_home  # noqa: F401 (a fixture)
from tests.conftest import DaemonFactory
from tests.support import TEST_IMAGE, Daemon, free_port, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

HTTPD = (
    "mkdir -p /tmp/www && echo served-inside > /tmp/www/index.html && httpd -f -p 8080 -h /tmp/www"
)
REFUSED = "Permission denied (publickey)"


def make_key(directory: Path, name: str) -> Path:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
    )
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return make_key(tmp_path, "mine")


def options(key: Path, port: int) -> list[str]:
    return [
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20", "-i", str(key), "-p", str(port),
    ]  # fmt: skip


def ssh(
    port: int, user: str, key: Path, *command: str, host: str = "127.0.0.1", stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", *options(key, port), f"{user}@{host}", *command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def gateway(factory: DaemonFactory, config: str | None = None) -> tuple[Daemon, int]:
    port = free_port()
    return factory(env={"JOBD_SSH_PORT": str(port)}, config=config), port


def reachable_box(daemon: Daemon, key: Path, **spec: Any) -> dict[str, Any]:
    """A running persistent job that `key` opens, serving HTTP on its port 8080."""
    spec.setdefault("command", ["sh", "-c", HTTPD])
    job = daemon.submit(kind="persistent", sshKeys=[key.with_suffix(".pub").read_text()], **spec)
    return daemon.wait_status(job["latestRunId"], {"running"})


def test_a_command_runs_in_the_run_with_its_exit_code_and_streams(
    daemon_factory: DaemonFactory, key: Path
) -> None:
    daemon, port = gateway(daemon_factory)
    run = reachable_box(daemon, key, name="box")
    assert run["ssh"] == {
        "host": "127.0.0.1",
        "port": port,
        "user": run["id"],
        "command": f"ssh -p {port} {run['id']}@127.0.0.1",
    }
    done = ssh(port, run["id"], key, "cat; echo to-stderr >&2; exit 3", stdin="piped in\n")
    assert (done.returncode, done.stdout, done.stderr) == (3, "piped in\n", "to-stderr\n")
    by_name = ssh(port, "box", key, "cat /tmp/www/index.html")
    assert (by_name.returncode, by_name.stdout) == (0, "served-inside\n"), by_name.stderr
    plain = daemon.submit(kind="persistent", command=["sleep", "300"])
    assert daemon.wait_status(plain["latestRunId"], {"running"})["ssh"] is None


def test_a_shell_on_a_terminal(daemon_factory: DaemonFactory, key: Path) -> None:
    daemon, port = gateway(daemon_factory)
    run = reachable_box(daemon, key)
    shell = subprocess.run(
        ["ssh", "-tt", *options(key, port), f"{run['id']}@127.0.0.1"],
        input="tty; echo term=$TERM; exit 5\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    assert shell.returncode == 5, shell.stdout + shell.stderr
    assert "/dev/pts/" in shell.stdout and "term=xterm-256color" in shell.stdout
    sized = Terminal(["ssh", *options(key, port), f"{run['id']}@127.0.0.1"], rows=30, columns=100)
    try:
        sized.type("busybox stty size\n")
        sized.expect(b"30 100")
        sized.resize(rows=40, columns=120)  # the client sends a window change
        sized.type("busybox stty size\n")
        sized.expect(b"40 120")
        sized.type("exit 6\n")
        assert sized.process.wait(30) == 6
    finally:
        sized.close()


class Terminal:
    """A program on a terminal of its own, of a given size, driven by what is typed."""

    def __init__(self, command: list[str], *, rows: int, columns: int) -> None:
        self.controller, terminal = pty.openpty()
        self._size(terminal, rows, columns)
        self.process = subprocess.Popen(
            command, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True
        )
        os.close(terminal)
        self.seen = b""

    @staticmethod
    def _size(fd: int, rows: int, columns: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.controller, text.encode())

    def resize(self, *, rows: int, columns: int) -> None:
        self._size(self.controller, rows, columns)
        self.process.send_signal(signal.SIGWINCH)

    def expect(self, wanted: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.seen and time.monotonic() < deadline:
            if select.select([self.controller], [], [], 0.2)[0]:
                try:
                    self.seen += os.read(self.controller, 4096)
                except OSError:
                    break
        assert wanted in self.seen, self.seen.decode(errors="replace")
        self.seen = self.seen.split(wanted, 1)[1]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.controller)


def test_scp_both_ways_and_sftp_work_on_the_containers_files(
    daemon_factory: DaemonFactory, key: Path, tmp_path: Path
) -> None:
    daemon, port = gateway(daemon_factory)
    run = reachable_box(daemon, key)
    sent = tmp_path / "sent.bin"
    sent.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    where = f"{run['id']}@127.0.0.1"
    scp = ["scp", *options(key, port)[:-2], "-P", str(port)]  # scp spells the port -P
    up = subprocess.run(
        [*scp, str(sent), f"{where}:/tmp/sent.bin"], capture_output=True, check=False
    )
    assert up.returncode == 0, up.stderr
    inside = ssh(port, run["id"], key, "wc -c < /tmp/sent.bin")
    assert inside.stdout.strip() == str(sent.stat().st_size)
    back = tmp_path / "back.bin"
    down = subprocess.run(
        [*scp, f"{where}:/tmp/sent.bin", str(back)], capture_output=True, check=False
    )
    assert down.returncode == 0 and back.read_bytes() == sent.read_bytes(), down.stderr
    batch = (
        "mkdir /tmp/made\nput {0} /tmp/made/one.bin\n"
        "rename /tmp/made/one.bin /tmp/made/two\nls /tmp/made\n"
    )
    sftp = subprocess.run(
        ["sftp", *options(key, port)[:-2], "-P", str(port), "-b", "-", where],
        input=batch.format(sent),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sftp.returncode == 0, sftp.stderr
    assert "/tmp/made/two" in sftp.stdout
    assert ssh(port, run["id"], key, "ls /tmp/made").stdout == "two\n"
    missing = subprocess.run(
        [*scp, f"{where}:/etc/passwd", str(tmp_path / "x")], capture_output=True, check=False
    )
    assert missing.returncode != 0, "the busybox image has no /etc/passwd: the files are its own"


def test_local_forward_reaches_a_port_inside_the_container(
    daemon_factory: DaemonFactory, key: Path
) -> None:
    daemon, port = gateway(daemon_factory)
    run = reachable_box(daemon, key)  # network none: only the container's own loopback
    local = free_port()
    forward = subprocess.Popen(
        [
            "ssh",
            *options(key, port),
            "-N",
            "-L",
            f"{local}:localhost:8080",
            f"{run['id']}@127.0.0.1",
        ],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def fetched() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as r:
                    return str(r.read().decode())
            except OSError:
                return None

        assert wait_until(fetched, 30, "the forwarded port") == "served-inside\n"
        assert fetched() == "served-inside\n", "a second connection over the same forward"
    finally:
        forward.terminate()
        forward.wait(10)


def test_every_refusal_is_the_same(
    daemon_factory: DaemonFactory, key: Path, tmp_path: Path
) -> None:
    daemon, port = gateway(daemon_factory)
    run = reachable_box(daemon, key, name="box")
    stranger = make_key(tmp_path, "stranger")
    nobodys = daemon.submit(kind="persistent", command=["sleep", "300"], name="keyless")
    attempts = {
        "wrong key": ssh(port, run["id"], stranger, "true"),
        "unknown run": ssh(port, "run-0123456789abcdef0123456789abcdef", key, "true"),
        "unknown name": ssh(port, "nothing-named-so", key, "true"),
        "job without keys": ssh(port, "keyless", key, "true"),
        "job id without keys": ssh(port, nobodys["id"], key, "true"),
    }
    for what, attempt in attempts.items():
        assert attempt.returncode == 255, what
        assert REFUSED in attempt.stderr, f"{what}: {attempt.stderr}"
        assert attempt.stdout == "", what
    seconds = []
    for user, offered in [("box", stranger), ("nothing-named-so", key)]:
        started = time.monotonic()
        ssh(port, user, offered, "true")
        seconds.append(time.monotonic() - started)
    assert abs(seconds[0] - seconds[1]) < 0.5, seconds
    assert ssh(port, "box", key, "true").returncode == 0
    named = [run["id"], "run-0123456789abcdef0123456789abcdef", "nothing-named-so", "keyless"]
    named += [nobodys["id"], "box", "nothing-named-so"]
    assert_audited(daemon, run, named)


def assert_audited(daemon: Daemon, run: dict[str, Any], refused: list[str]) -> None:
    """The audit log has the session, as the job's owner's, and each refusal, naming only
    what the client named."""

    def ssh_entries() -> list[dict[str, Any]] | None:
        found = daemon.get("/v1/audit?limit=100").body["entries"]
        entries = [e for e in found if e["via"] == "ssh"]
        return entries if len(entries) >= len(refused) + 1 else None

    entries = wait_until(ssh_entries, 10, "the SSH entries in the audit log")
    opened = [e for e in entries if e["status"] == 200]
    assert [(e["method"], e["path"], e["outcome"]) for e in opened] == [("SSH", "exec", "ok")]
    owner = daemon.get(f"/v1/jobs/{run['jobId']}").body["owner"]
    assert (opened[0]["user"], opened[0]["uid"]) == (owner["user"], owner["uid"])
    assert opened[0]["peer"] == "127.0.0.1"
    assert opened[0]["ids"] == [run["jobId"], run["id"]]
    logins = [e for e in entries if e["status"] == 401]
    assert sorted(e["path"] for e in logins) == sorted(f"login {n}" for n in refused)
    assert all(e["user"] is None and e["outcome"] == "refused" for e in logins), logins


def test_a_key_taken_off_the_job_stops_working(
    daemon_factory: DaemonFactory, key: Path, tmp_path: Path
) -> None:
    daemon, port = gateway(daemon_factory)
    run = reachable_box(daemon, key)
    other = make_key(tmp_path, "other")
    changed = daemon.request(
        "PATCH", f"/v1/jobs/{run['jobId']}", {"sshKeys": [other.with_suffix(".pub").read_text()]}
    )
    assert changed.status == 200, changed.text
    assert REFUSED in ssh(port, run["id"], key, "true").stderr
    assert ssh(port, run["id"], other, "echo ok").stdout == "ok\n"


def test_bad_keys_addresses_and_kinds_are_refused_with_a_400(
    daemon_factory: DaemonFactory, key: Path
) -> None:
    daemon, _ = gateway(daemon_factory)
    public = key.with_suffix(".pub").read_text()
    for spec, words in [
        ({"kind": "persistent", "sshKeys": ["ssh-ed25519 AAAAnot-a-key x"]}, "sshKeys[0]"),
        ({"kind": "persistent", "sshKeys": [key.read_text()]}, "sshKeys[0]"),
        ({"kind": "batch", "sshKeys": [public]}, "persistent"),
        ({"kind": "persistent", "allowedIps": ["10.0.0.300/8"]}, "allowedIps"),
        ({"kind": "persistent", "allowedIps": ["10.0.0.1/8"]}, "allowedIps"),
    ]:
        response = daemon.post("/v1/jobs", {"image": TEST_IMAGE, "command": ["true"], **spec})
        assert response.status == 400, response.text
        assert words in response.body["error"]["message"], response.text
    assert daemon.get("/v1/jobs").body["jobs"] == [], "nothing was created"
    job = daemon.submit(kind="persistent", command=["true"], allowedIps=["10.1.2.3", "::1"])
    assert job["allowedIps"] == ["10.1.2.3/32", "::1/128"] and job["sshKeys"] == []


def host_address() -> str | None:
    """One of this machine's own addresses that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # a route is chosen: nothing is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.fixture
def outside() -> str:
    address = host_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    return address


def test_allowed_ips_are_checked_before_the_key(
    daemon_factory: DaemonFactory, key: Path, outside: str
) -> None:
    daemon, port = gateway(daemon_factory, config='[ssh]\naddress = "0.0.0.0"\n')
    default = reachable_box(daemon, key, name="local-only")
    assert REFUSED in ssh(port, "local-only", key, "true", host=outside).stderr
    assert ssh(port, "local-only", key, "echo ok").stdout == "ok\n"
    reachable_box(daemon, key, name="far", allowedIps=[f"{outside}/32"])
    assert ssh(port, "far", key, "echo ok", host=outside).stdout == "ok\n"
    from_loopback = ssh(port, "far", key, "true")
    assert from_loopback.returncode == 255 and REFUSED in from_loopback.stderr
    assert default["ssh"]["host"] != "0.0.0.0"


def connects(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.skipif(os.geteuid() != 0, reason="firewall rules need root and rootful podman")
def test_published_ports_keep_to_allowed_ips(daemon_factory: DaemonFactory, outside: str) -> None:
    daemon = daemon_factory(config='publish_address = "0.0.0.0"\n')
    job = daemon.submit(
        kind="persistent",
        network="default",
        ports=[8080],
        allowedIps=[f"{outside}/32"],
        command=["sh", "-c", HTTPD],
    )
    run = daemon.wait_status(job["latestRunId"], {"running"})
    host_port = run["endpoints"][0]["address"].rsplit(":", 1)[1]
    assert wait_until(lambda: connects(f"{outside}:{host_port}"), 30, "the allowed address")
    assert not connects(f"127.0.0.1:{host_port}"), "loopback is not in allowedIps"
    chain = ports_chain(daemon.data_dir)  # this daemon's own

    def rules() -> str:
        listed = [["iptables", "-S", chain], ["iptables", "-t", "nat", "-S", chain]]
        return "".join(
            subprocess.run(c, capture_output=True, text=True, check=False).stdout for c in listed
        )

    assert rules().count(f"--dport {host_port}") == 3, rules()
    daemon.post(f"/v1/runs/{run['id']}/stop", {"force": True})
    daemon.wait_status(run["id"])
    assert wait_until(lambda: rules() == "", 30, "the chain to go with the last rule")
    local = daemon.submit(
        kind="persistent",
        network="default",
        ports=[8080],
        allowedIps=["127.0.0.1"],
        command=["sh", "-c", HTTPD],
    )
    endpoint = daemon.wait_status(local["latestRunId"], {"running"})["endpoints"][0]
    assert endpoint["address"].startswith("127.0.0.1:"), "loopback only: published on loopback"


@pytest.fixture
def team(
    users: None, podman_socket: Path, test_image: str, shared_dir: Path
) -> Iterator[tuple[Daemon, int]]:
    """The system daemon, as root, shared by alice and bob, with its gateway on."""
    port = free_port()
    d = Daemon(
        shared_dir / "daemon",
        podman_socket=podman_socket,
        config="system = true\n",
        env={"JOBD_SSH_PORT": str(port)},
    )
    (shared_dir / "daemon").chmod(0o755)
    try:
        d.start()
        yield d, port
    finally:
        d.stop(kill_containers=True)


def test_another_users_job_is_refused_and_a_job_has_its_owners_powers(
    team: tuple[Daemon, int], tmp_path: Path
) -> None:
    daemon, port = team
    keys = {user: make_key(tmp_path, user) for user in (ALICE, BOB)}
    runs = {}
    for user in (ALICE, BOB):
        job = submit(
            daemon,
            user,
            kind="persistent",
            name="box",
            command=["sleep", "300"],
            sshKeys=[keys[user].with_suffix(".pub").read_text()],
        )
        runs[user] = daemon.wait_status(job["latestRunId"], {"running"})["id"]
    refused = ssh(port, runs[ALICE], keys[BOB], "true")
    assert refused.returncode == 255 and REFUSED in refused.stderr
    whose = ssh(port, "box", keys[BOB], "id -u; touch /outputs/mine; ls -n /outputs/mine")
    assert whose.returncode == 0, whose.stderr
    bob_uid = str(
        call(daemon, BOB, "GET", f"/v1/runs/{runs[BOB]}").body["finalConfig"]["runAs"]["uid"]
    )
    uid, listing = whose.stdout.splitlines()
    assert uid == bob_uid and listing.split()[2] == bob_uid
    upload = tmp_path / "note.txt"
    upload.write_text("from bob\n")
    scp = ["scp", *options(keys[BOB], port)[:-2], "-P", str(port)]
    copied = subprocess.run(
        [*scp, str(upload), "box@127.0.0.1:/outputs/note.txt"], capture_output=True, check=False
    )
    assert copied.returncode == 0, copied.stderr
    outputs = daemon.data_dir / "outputs" / runs[BOB]
    assert (outputs / "note.txt").stat().st_uid == int(bob_uid), "sftp writes as the job's owner"
    denied = subprocess.run(
        [*scp, str(upload), "box@127.0.0.1:/bin/planted"], capture_output=True, check=False
    )
    assert denied.returncode != 0, "the image's root-owned /bin is not bob's to write"


@pytest.mark.rootless
def test_rootless_sessions_files_and_forwards(
    user_home: Path,  # noqa: F811 (test_rootless's fixture: an unprivileged user's home)
    key: Path,
    tmp_path: Path,
) -> None:
    """A daemon run by an unprivileged user: its containers are in that user's user
    namespace, which the file and port helpers join before the container's own."""
    entry = pwd.getpwnam(ROOTLESS_USER)
    port = free_port()
    env = {
        "HOME": entry.pw_dir,
        "XDG_RUNTIME_DIR": str(user_home.parent / f"xdg-{os.getpid()}"),
        "PATH": os.environ["PATH"],
        "JOBD_SSH_PORT": str(port),
    }
    daemon = Daemon(user_home, user=ROOTLESS_USER, env=env, bin_dir=install_for(user_home))
    try:
        daemon.start(timeout=120)
        serve = "while true; do echo served-inside | nc -l -p 8080; done"
        job = daemon.submit(
            image="localhost/jobd/busybox:latest",
            kind="persistent",
            command=["sh", "-c", serve],
            sshKeys=[key.with_suffix(".pub").read_text()],
        )
        run = daemon.wait_status(job["latestRunId"], {"running"}, timeout=180)
        assert daemon.get("/v1/health").body["podman"]["rootless"] is True
        done = ssh(port, run["id"], key, "id -u; exit 4")
        assert (done.returncode, done.stdout) == (4, "0\n"), done.stderr
        sent = tmp_path / "sent.txt"
        sent.write_text("to a rootless container\n")
        scp = ["scp", *options(key, port)[:-2], "-P", str(port)]
        up = subprocess.run(
            [*scp, str(sent), f"{run['id']}@127.0.0.1:/tmp/sent.txt"],
            capture_output=True,
            check=False,
        )
        assert up.returncode == 0, up.stderr
        assert ssh(port, run["id"], key, "cat /tmp/sent.txt").stdout == sent.read_text()
        local = free_port()
        forward = subprocess.Popen(
            ["ssh", *options(key, port), "-N", "-L", f"{local}:127.0.0.1:8080",
             f"{run['id']}@127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert wait_until(lambda: read_line(local), 30, "the forward") == b"served-inside\n"
        finally:
            forward.terminate()
            forward.wait(10)
    finally:
        daemon.stop(kill_containers=False)


def read_line(port: int) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            return connection.makefile("rb").readline() or None
    except OSError:
        return None


def test_jobctl_gives_a_job_keys_and_shows_the_command(
    daemon_factory: DaemonFactory, key: Path
) -> None:
    daemon, port = gateway(daemon_factory)
    made = daemon.jobctl(
        "run", "--kind", "persistent", "--network", "none", "--name", "cli-box",
        "--ssh-key", str(key.with_suffix(".pub")), "--allow-ip", "127.0.0.1",
        TEST_IMAGE, "--", "sleep", "300",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    job_id, run_id = made.stdout.split()
    run = daemon.wait_status(run_id, {"running"})
    assert daemon.request("GET", f"/v1/jobs/{job_id}").body["allowedIps"] == ["127.0.0.1/32"]
    shown = daemon.jobctl("show", run_id)
    assert f"ssh -p {port} {run_id}@127.0.0.1" in shown.stdout, shown.stdout
    assert ssh(port, "cli-box", key, "echo $((6 * 7))").stdout == "42\n"
    private = daemon.jobctl("run", "--kind", "persistent", "--ssh-key", str(key), TEST_IMAGE)
    assert private.returncode == 2 and "private key" in private.stderr
    assert run["ssh"]["user"] == run_id
