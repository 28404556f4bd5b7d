"""Named volumes as the edge asks for them: create one, list them with their size and the
runs using them, read one, delete one no run uses. Jobs create theirs on first use too."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Mapping
from typing import Any

from jobd.config import Config
from jobd.domain.owners import Owner, Reach
from jobd.domain.records import now
from jobd.domain.volumes import Volume
from jobd.node.disk import usage
from jobd.node.mounts import make_volume_dir, volume_dir
from jobd.services.validation import validate
from jobd.store import Store


class Volumes:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    async def create(self, body: Mapping[str, Any], owner: Owner) -> dict[str, Any]:
        validate(body, "VolumeCreate")
        volume = Volume(
            name=body["name"], owner=owner, created_at=now(), labels=dict(body.get("labels", {}))
        )
        await self.store.create_volume(volume)
        await asyncio.to_thread(make_volume_dir, volume.name, self.config)
        return await self._doc(volume, [])

    async def list_volumes(self, reach: Reach) -> list[dict[str, Any]]:
        volumes = await self.store.list_volumes(reach=reach)
        users = await self.store.volume_users([v.name for v in volumes])
        return [await self._doc(v, users.get(v.name, [])) for v in volumes]

    async def get(self, name: str, reach: Reach) -> dict[str, Any]:
        volume = await self.store.get_volume(name, reach=reach)
        users = await self.store.volume_users([name])
        return await self._doc(volume, users.get(name, []))

    async def delete(self, name: str, reach: Reach) -> None:
        """Forget the volume and delete what it holds; a Conflict while a run uses it. The
        directory is moved aside first, so a run that names the volume again a moment later
        starts from an empty one rather than a half-deleted one."""
        await self.store.get_volume(name, reach=reach)
        await self.store.delete_volume(name)
        directory = volume_dir(name, self.config)
        if directory.exists():
            doomed = directory.with_name(f".deleted-{name}-{secrets.token_hex(4)}")
            directory.rename(doomed)
            await asyncio.to_thread(shutil.rmtree, doomed, True)

    async def _doc(self, volume: Volume, used_by: list[str]) -> dict[str, Any]:
        directory = volume_dir(volume.name, self.config)
        held = await asyncio.to_thread(usage, directory)
        return {
            **volume.to_api(),
            "sizeBytes": held.size_bytes,
            "files": held.files,
            "usedBy": used_by,
            "mountpoint": str(directory),
        }
