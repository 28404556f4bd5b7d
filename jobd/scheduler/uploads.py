"""Uploads' housekeeping, a supervisor step at the reconcile's pace: delete the uploads no job
has named for [uploads] expire_days (records first, then files), and at startup what an
interrupted upload or deletion left on disk."""

from __future__ import annotations

import asyncio
import logging

from jobd.config import Config
from jobd.domain.records import now
from jobd.node.uploads import remove, tidy
from jobd.store import Store

log = logging.getLogger(__name__)


async def expire_uploads(store: Store, config: Config) -> int:
    """How many uploads expired."""
    cutoff = now().timestamp() - config.uploads.expire_seconds
    expired = await store.expire_uploads(cutoff)
    for upload in expired:
        log.info("upload %s (%s) expired: no job named it", upload.slug, upload.name)
        await asyncio.to_thread(remove, upload.slug, upload.sha256, config)
    return len(expired)


async def tidy_uploads(store: Store, config: Config) -> None:
    """Before the API serves: files no upload record names, and blobs no file links."""
    removed = await asyncio.to_thread(tidy, await store.upload_keys(), config)
    if removed:
        log.info("removed %d files left by interrupted uploads", removed)
