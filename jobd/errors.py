"""jobd's errors. Each class's docstring is its default message.

JobdError
├── InvalidRequest          400  the request is malformed or breaks a rule
│   ├── PlanTooLarge        422  the plan needs more than the node has
│   ├── NotHere             422  it names something this machine does not have (a host path)
│   └── TooLarge            413  the request's body is over the configured limit (an upload)
├── Unauthorized            401  the TCP API needs a token or a signed request
├── Forbidden               403  the caller may not do this (a priority above its limit)
├── NotFound                404  no such job or run
├── Conflict                409  the run is not in a state that allows this
│   └── Ambiguous           409  an id prefix that several jobs or runs have
├── TooManyRequests         429  slow down: repeated failed authentications
├── StoreError              500  the database refused an operation
├── NoSpace                 507  no space left on the data directory's disk (see lacks_space)
└── RuntimeFailure          502  podman failed; the runtime module raises only these
    ├── RuntimeUnavailable  503  the podman API can't be reached
    ├── ImageNotFound            the image is not in local storage and can't be pulled
    └── ContainerGone            the container no longer exists
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import time
from collections.abc import Iterator
from typing import ClassVar

SQLITE_FULL = 13  # the primary result code of "database or disk is full"
# "disk I/O error" from growing the WAL index (the -shm file): SQLite writes a byte into each
# new page of it, and on a full disk that write fails
SQLITE_IOERR_SHMSIZE = 10 | (19 << 8)
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class JobdError(Exception):
    """jobd failed."""

    status = 500
    code = "internal"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class InvalidRequest(JobdError):
    """The request is invalid."""

    status = 400
    code = "invalid_request"


class Forbidden(JobdError):
    """The caller may not do this."""

    status = 403
    code = "forbidden"


class PlanTooLarge(InvalidRequest):
    """The job needs more CPUs, memory, disk or GPUs than this machine has."""

    status = 422
    code = "plan_exceeds_node"


class NotHere(InvalidRequest):
    """The request names something this machine does not have."""

    status = 422
    code = "not_here"


class TooLarge(InvalidRequest):
    """The request's body is larger than this daemon accepts."""

    status = 413
    code = "too_large"


class Unauthorized(JobdError):
    """The TCP API needs a valid token or a signed request."""

    status = 401
    code = "unauthorized"


class NotFound(JobdError):
    """No such object."""

    status = 404
    code = "not_found"


class Conflict(JobdError):
    """The object is not in a state that allows this."""

    status = 409
    code = "conflict"


class Ambiguous(Conflict):
    """The id prefix matches more than one job or run: give more of the id."""

    code = "ambiguous"


class TooManyRequests(JobdError):
    """Too many requests: slow down."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds, for the Retry-After header


class StoreError(JobdError):
    """The store refused the operation."""

    code = "store_error"


class NoSpace(JobdError):
    """No space left on the disk of jobd's data directory: nothing was written."""

    status = 507
    code = "no_space"
    # when one was last made, for health: the data directory's disk is the whole process's
    noted_at: ClassVar[float | None] = None

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        NoSpace.note()

    @classmethod
    def note(cls) -> None:
        """A write failed for lack of space (raised or not)."""
        cls.noted_at = time.monotonic()

    @classmethod
    def cleared(cls) -> None:
        """Space has returned: forget the last failure."""
        cls.noted_at = None


def lacks_space(error: BaseException) -> bool:
    """Whether `error` is a write that failed for lack of space: ENOSPC or EDQUOT from the
    filesystem, SQLITE_FULL from SQLite (its message: "database or disk is full"), or
    SQLite's failure to grow its -shm file (a "disk I/O error")."""
    if isinstance(error, NoSpace):
        return True
    if isinstance(error, OSError):
        return error.errno in NO_SPACE_ERRNOS
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return code is not None and (code & 0xFF == SQLITE_FULL or code == SQLITE_IOERR_SHMSIZE)
    return False


def no_space(error: BaseException, what: str) -> NoSpace:
    """`error` (one that lacks_space) as jobd's NoSpace, saying what could not be written."""
    if isinstance(error, NoSpace):
        return error
    return NoSpace(
        f"no space left on the data directory's disk: could not write {what} ({error})."
        " Free some space there; jobd goes on by itself once there is"
    )


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Around a write to the data directory: a failure for lack of space leaves as NoSpace
    (`what` could not be written), any other as it was."""
    try:
        yield
    except (OSError, sqlite3.Error) as e:
        if lacks_space(e):
            raise no_space(e, what) from e
        raise


class RuntimeFailure(JobdError):
    """The container runtime failed."""

    status = 502
    code = "runtime_error"


class RuntimeUnavailable(RuntimeFailure):
    """The podman API can't be reached."""

    status = 503
    code = "runtime_unavailable"


class ImageNotFound(RuntimeFailure):
    """The image is not in local storage and could not be pulled."""

    code = "image_not_found"


class ContainerGone(RuntimeFailure):
    """The container no longer exists."""

    code = "container_gone"
