"""Jobs and runs found by what a request calls them (domain/references.py says what that may
be): resolved to their ids once, at the edge, for every endpoint that names one."""

from __future__ import annotations

from jobd.domain.owners import Reach
from jobd.domain.references import SHOWN_CANDIDATES, Reference
from jobd.store import Store


async def resolve(store: Store, reference: Reference, reach: Reach, uid: int | None) -> str:
    """The id a reference names within `reach`: a whole id as given (whoever reads it checks
    that it is there); a job's name, the newest job of that name (the caller's, `uid`, before
    a project's); else the one record whose id has the prefix. NotFound when none has,
    Ambiguous (naming them) when several have."""
    if reference.full_id:
        return reference.text
    if reference.name is not None:
        named = await store.job_named(reference.name, reach=reach, uid=uid)
        if named is not None:
            return named
    ids = reference.id_range()
    if ids is None:
        raise reference.not_found()
    found = await store.ids_in_range(reference.kind, ids, reach=reach, limit=SHOWN_CANDIDATES + 1)
    if not found:
        raise reference.not_found()
    if len(found) > 1:
        raise reference.ambiguous(found, more=len(found) > SHOWN_CANDIDATES)
    return found[0][0]
