"""Who a run is on the host: an owner's run on the system daemon is the owner, with no
capabilities; the daemon's own user's keeps the image's user and a documented set; a
rootless daemon's are all in its user namespace. A job's `user` may only name its owner."""

from __future__ import annotations

import pytest

from jobd.domain.identity import ROOT_CAPABILITIES, Identity, RunAs, run_as, user_problem

ALICE = Identity.of(RunAs.OWNER, uid=2001, gid=2001, groups=(2001, 3000))


def test_how_a_run_runs() -> None:
    assert run_as(owner_uid=2001, daemon_uid=0, rootless=False) is RunAs.OWNER
    assert run_as(owner_uid=0, daemon_uid=0, rootless=False) is RunAs.DAEMON_USER
    assert run_as(owner_uid=2001, daemon_uid=2001, rootless=True) is RunAs.ROOTLESS
    assert ALICE.user == "2001:2001" and ALICE.capabilities == ()
    daemon = Identity.of(RunAs.DAEMON_USER)
    assert daemon.user is None and set(daemon.capabilities) == set(ROOT_CAPABILITIES)
    assert daemon.as_user("0:0") == daemon and daemon.as_user("root") == daemon
    assert daemon.as_user("1000:1000").capabilities == (), "a non-root user keeps none"
    assert not {"SYS_ADMIN", "NET_RAW", "MKNOD", "SETFCAP"} & set(daemon.capabilities)
    assert Identity.from_api(ALICE.to_api()) == ALICE
    assert ALICE.to_api()["noNewPrivileges"] is True


@pytest.mark.parametrize(
    ("user", "ok"),
    [(None, True), ("2001", True), ("2001:3000", True), ("2001:2001", True), ("0", False),
     ("root", False), ("2002", False), ("2001:0", False), ("2001:x", False)],
)  # fmt: skip
def test_an_owners_job_may_only_be_its_owner(user: str | None, ok: bool) -> None:
    assert (user_problem(user, ALICE) is None) is ok
    assert user_problem(user, Identity.of(RunAs.DAEMON_USER)) is None
