"""The request bodies jobctl builds from its options."""

from __future__ import annotations

from jobctl.bodies import job_body


def test_job_body_leaves_out_what_was_not_given() -> None:
    body = job_body(
        image="busybox",
        command=(),
        env=(),
        plan=None,
        timeout=None,
        name=None,
        labels=(),
        network=None,
    )
    assert body == {"image": "busybox", "env": {}, "labels": {}}


def test_job_body_carries_every_option_and_repeated_pairs() -> None:
    body = job_body(
        image="busybox",
        command=("sh", "-c", "exit 3"),
        env=(("A", "1"), ("A", "2")),
        plan="pro",
        timeout=5400,
        name="n",
        labels=(("team", "x"),),
        network="none",
    )
    assert body == {
        "image": "busybox",
        "command": ["sh", "-c", "exit 3"],
        "env": {"A": "2"},
        "plan": "pro",
        "timeoutSeconds": 5400,
        "name": "n",
        "labels": {"team": "x"},
        "network": "none",
    }
