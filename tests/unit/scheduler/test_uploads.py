"""The supervisor's uploads housekeeping, on a real store and real files: expired uploads go,
records then files, and a content another upload has stays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from jobd.config import Config
from jobd.domain.owners import EVERYONE, Owner
from jobd.domain.records import now
from jobd.domain.uploads import Upload
from jobd.node.uploads import Incoming, blob_path, keep, upload_file
from jobd.scheduler.uploads import expire_uploads, tidy_uploads
from jobd.store import Store


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(data_dir=tmp_path / "data", socket=tmp_path / "jobd.sock")


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    config.data_dir.mkdir()
    s = await Store.open(config.database)
    yield s
    await s.close()


async def uploaded(store: Store, config: Config, slug: str, days_unused: int) -> Upload:
    incoming = Incoming(config)
    incoming.write(b"the same content")
    incoming.finish()
    keep(incoming, slug, config)
    used = now() - timedelta(days=days_unused)
    upload = Upload(
        slug=slug,
        name="a.txt",
        size_bytes=incoming.size_bytes,
        sha256=incoming.sha256,
        owner=Owner(uid=1, user="dev", via="unix"),
        created_at=used,
        used_at=used,
    )
    await store.create_upload(upload)
    return upload


async def test_expired_uploads_go_with_their_files(store: Store, config: Config) -> None:
    old = await uploaded(store, config, "upload-old", days_unused=8)
    fresh = await uploaded(store, config, "upload-fresh", days_unused=1)
    assert await expire_uploads(store, config) == 1
    assert [u.slug for u in await store.list_uploads(reach=EVERYONE)] == [fresh.slug]
    assert not upload_file(old.slug, config).exists()
    assert blob_path(old.sha256, config).exists(), "the fresh upload has the same content"
    assert upload_file(fresh.slug, config).read_bytes() == b"the same content"
    await tidy_uploads(store, config)
    assert upload_file(fresh.slug, config).exists(), "a recorded upload is never tidied away"
