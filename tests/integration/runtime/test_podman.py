"""The podman runtime against a real `podman system service`: create/init/start, exit events,
idempotent stop and remove, listing by instance label, OOM detection through the cgroup."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobd.config import default_podman_runtime
from jobd.errors import ContainerGone, ImageNotFound
from jobd.runtime.contract import ContainerExit, ContainerSpec
from jobd.runtime.podman.client import PodmanRuntime
from jobd.runtime.podman.oom import OomWatch

pytestmark = [pytest.mark.podman]
MIB = 1024 * 1024


@pytest.fixture
async def runtime(podman_socket: Path, test_image: str) -> AsyncIterator[PodmanRuntime]:
    rt = PodmanRuntime(
        podman_socket, instance=secrets.token_hex(4), oci_runtime=default_podman_runtime()
    )
    yield rt
    for state in await rt.list_managed():
        await rt.remove(state.container_id)
    await rt.close()


def spec(tmp_path: Path, image: str, *command: str, memory: int = 256 * MIB) -> ContainerSpec:
    run_id = f"run-{secrets.token_hex(6)}"
    (tmp_path / run_id).mkdir()
    return ContainerSpec(
        name=run_id,
        run_id=run_id,
        job_id="job-test",
        image=image,
        command=command,
        env={},
        memory_bytes=memory,
        cpus=0.5,
        pids_limit=64,
        nofile=1024,
        nproc=64,
        network="none",
        log_path=tmp_path / run_id / "container.log",
    )


async def next_exit(exits: AsyncIterator[ContainerExit], run_id: str) -> ContainerExit:
    async with asyncio.timeout(30):
        async for exit_ in exits:
            if exit_.run_id == run_id:
                return exit_
    raise AssertionError("no exit")


async def test_a_container_runs_with_its_limits_and_its_exit_is_reported(
    runtime: PodmanRuntime,
    tmp_path: Path,
    test_image: str,
) -> None:
    s = spec(tmp_path, test_image, "sh", "-c", "echo hello; exit 4")
    exits = runtime.exits(since=0)
    container_id = await runtime.create(s)
    created = await runtime.inspect(container_id)
    assert created.status in {"created", "initialized"} and not created.running
    await runtime.start(container_id)
    exit_ = await next_exit(exits, s.run_id)
    assert exit_.exit_code == 4
    state = await runtime.inspect(container_id)
    assert state.exited and state.exit_code == 4 and state.run_id == s.run_id
    assert "hello" in s.log_path.read_text()
    assert [c.run_id for c in await runtime.list_managed()] == [s.run_id]
    await runtime.remove(container_id)
    await runtime.remove(container_id)  # removing a gone container is success
    await runtime.stop(container_id, 1)  # and so is stopping one
    with pytest.raises(ContainerGone):
        await runtime.inspect(container_id)


async def test_oom_kills_are_seen_through_the_cgroup(
    runtime: PodmanRuntime,
    tmp_path: Path,
    test_image: str,
) -> None:
    s = spec(
        tmp_path,
        test_image,
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=300M count=1",
        memory=64 * MIB,
    )
    container_id = await runtime.create(s)
    state = await runtime.inspect(container_id)
    assert state.pid
    watch = OomWatch.start(state.pid)
    assert watch is not None, "a rootful container has a memory cgroup to watch"
    await runtime.start(container_id)
    async with asyncio.timeout(30):
        while not (await runtime.inspect(container_id)).exited:
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # let the loop run the eventfd callback
    assert watch.check() is True
    watch.close()
    state = await runtime.inspect(container_id)
    assert state.oom_killed, "the runtime's own watch, armed at create, says so too"


async def test_a_missing_image_is_image_not_found(runtime: PodmanRuntime) -> None:
    assert not await runtime.image_exists("localhost/definitely-missing:0")
    with pytest.raises(ImageNotFound):
        await runtime.fetch_image("localhost/definitely-missing:0")
