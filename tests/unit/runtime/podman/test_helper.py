"""The container helper's reading of who the container's process is (from /proc/PID/status
as the host sees it), its ids mapped into the container's user namespace."""

from __future__ import annotations

from jobd.runtime.podman.helper import map_id, read_credentials

STATUS = """Name:\tcatatonit
Uid:\t100999\t100999\t100999\t100999
Gid:\t101000\t101000\t101000\t101000
Groups:\t101000 100010 \nCapInh:\t0000000000000000
CapPrm:\t00000000a80425fb
CapEff:\t00000000a80425fb
CapBnd:\t00000000a80425fb
CapAmb:\t0000000000000000
"""
ROOTLESS_MAP = "         0       1000          1\n         1     100000      65536\n"
IDENTITY_MAP = "         0          0 4294967295\n"


def test_ids_are_mapped_into_the_containers_namespace() -> None:
    creds = read_credentials(STATUS, ROOTLESS_MAP, ROOTLESS_MAP)
    assert creds.uids == (1000, 1000, 1000)
    assert creds.gids == (1001, 1001, 1001)
    assert creds.groups == (1001, 11)
    assert creds.effective == creds.permitted == creds.bounding == 0xA80425FB
    assert creds.inheritable == 0


def test_rootful_ids_stay_as_they_are_and_unmapped_ones_are_nobody() -> None:
    assert read_credentials(STATUS, IDENTITY_MAP, IDENTITY_MAP).uids == (100999,) * 3
    assert map_id(1000, ROOTLESS_MAP) == 0
    assert map_id(5, ROOTLESS_MAP) == 65534
