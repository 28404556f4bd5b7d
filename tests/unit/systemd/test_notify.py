"""systemd's notify protocol: the datagram's lines, abstract socket names, and a real
datagram socket receiving what jobd sends (as systemd's would)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from jobd.systemd.notify import Notifier, message, socket_address


def test_message_says_ready_stopping_and_status_on_one_line_each() -> None:
    assert message(ready=True, status="serving on /run/jobd/jobd.sock") == (
        b"READY=1\nSTATUS=serving on /run/jobd/jobd.sock"
    )
    assert message(stopping=True) == b"STOPPING=1"
    # a newline would end STATUS= and start a bogus assignment
    assert message(status="two\nlines") == b"STATUS=two lines"


def test_an_at_sign_names_an_abstract_socket() -> None:
    assert socket_address("@/org/freedesktop/systemd1/notify/42") == (
        "\0/org/freedesktop/systemd1/notify/42"
    )
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


@pytest.fixture
def manager(tmp_path: Path) -> socket.socket:
    """A datagram socket where the service manager's would be."""
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify"))
    receiver.settimeout(5)
    return receiver


def test_the_notifier_sends_each_message_as_one_datagram(
    manager: socket.socket, tmp_path: Path
) -> None:
    notifier = Notifier(str(tmp_path / "notify"))
    notifier.status("recovering")
    notifier.ready("serving")
    notifier.stopping("stopping")
    received = [manager.recv(4096) for _ in range(3)]
    manager.close()
    assert received == [
        b"STATUS=recovering",
        b"READY=1\nSTATUS=serving",
        b"STOPPING=1\nSTATUS=stopping",
    ]


def test_an_abstract_socket_is_reached_too() -> None:
    name = f"jobd-test-notify-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        Notifier("@" + name).ready("up")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=up"


def test_notify_socket_is_taken_from_the_environment_and_not_passed_on(
    monkeypatch: pytest.MonkeyPatch, manager: socket.socket, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    notifier = Notifier.from_environment()
    import os

    assert "NOTIFY_SOCKET" not in os.environ  # podman and jobs must not write to it
    notifier.ready("up")
    assert manager.recv(4096) == b"READY=1\nSTATUS=up"
    manager.close()


def test_without_a_manager_nothing_is_sent_and_a_gone_one_is_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Notifier(None).ready("up")  # not under systemd: nothing to do
    Notifier(str(tmp_path / "gone")).ready("up")
    assert "could not notify the service manager" in caplog.text
