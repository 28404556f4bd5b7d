"""A run's states, the one table of legal transitions between them, and how runs end: the
failure types and their categories (kept apart from the state, as pueue keeps a task's result),
what made a run, and why it was stopped.

    pending -> assigned -> running -> succeeded | failed | cancelled
    with cancelling while a stop requested by the user is in progress.

docs/state-machine.md draws the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"  # queued: waits until its plan fits on the node
    ASSIGNED = "assigned"  # placed: its resources are reserved, its container is being created
    RUNNING = "running"  # its container has started
    CANCELLING = "cancelling"  # the user cancelled it and its container is being stopped
    SUCCEEDED = "succeeded"  # the container exited 0
    FAILED = "failed"  # ended for any other reason than a cancel; see Failure
    CANCELLED = "cancelled"  # the user cancelled it

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def holds_resources(self) -> bool:
        return self in ACTIVE_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({RunStatus.ASSIGNED, RunStatus.RUNNING, RunStatus.CANCELLING})

# The one table of legal transitions. The store refuses anything else.
TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset(
        {RunStatus.ASSIGNED, RunStatus.CANCELLED, RunStatus.FAILED}  # failed: unschedulable
    ),
    RunStatus.ASSIGNED: frozenset(
        {
            RunStatus.PENDING,
            RunStatus.RUNNING,
            RunStatus.CANCELLING,
            RunStatus.FAILED,
            RunStatus.SUCCEEDED,
            RunStatus.CANCELLED,
        }
    ),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.CANCELLING,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,  # a clean stop the container did not exit 0 from
        }
    ),
    RunStatus.CANCELLING: frozenset({RunStatus.CANCELLED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}


def sources_of(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses a run may move to `target` from."""
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


class FailureType(StrEnum):
    EXIT_CODE = "exit_code"  # the container exited non-zero
    OOM_KILLED = "oom_killed"  # the kernel killed a process of the run for exceeding its memory
    TIMEOUT = "timeout"  # the run reached its deadline and was stopped
    CANCELLED = "cancelled"  # the user cancelled the run
    IMAGE_NOT_FOUND = "image_not_found"  # the image is not in local storage and can't be pulled
    RUNTIME_ERROR = "runtime_error"  # podman could not create or start the container
    LOST = "lost"  # the container vanished (e.g. a reboot) while jobd was not watching
    GPU_UNAVAILABLE = "gpu_unavailable"  # its GPUs did not reach the container: never run on CPU
    UNSCHEDULABLE = "unschedulable"  # it waited in the queue longer than its maxPendingSeconds
    COMMAND_NOT_FOUND = "command_not_found"  # its command does not exist (a shell's exit 127)
    COMMAND_NOT_EXECUTABLE = "command_not_executable"  # it exists but can't run (exit 126)
    OUTPUT_LIMIT = "output_limit"  # its outputs outgrew their limit, or the disk ran short
    DEPENDENCY_FAILED = "dependency_failed"  # what it waited on ended so it never can start

    @property
    def category(self) -> FailureCategory:
        return FAILURE_CATEGORIES[self]

    @property
    def retryable(self) -> bool:
        """Whether another attempt could end otherwise: a cancel is final, and a command that
        is missing from the image stays missing."""
        return self not in NEVER_RETRIED


class FailureCategory(StrEnum):
    APPLICATION = "application"  # the job's own code failed: a non-zero exit, an OOM kill
    TIMEOUT = "timeout"  # the job ran past its deadline
    INFRASTRUCTURE = "infrastructure"  # jobd, podman or the machine failed the run
    CANCELLED = "cancelled"  # someone stopped it
    UNSCHEDULABLE = "unschedulable"  # the node never had room for it in time: not retried
    DEPENDENCY = "dependency"  # a run it waited on ended so its condition can't be met


FAILURE_CATEGORIES: Mapping[FailureType, FailureCategory] = {
    FailureType.EXIT_CODE: FailureCategory.APPLICATION,
    FailureType.OOM_KILLED: FailureCategory.APPLICATION,
    FailureType.TIMEOUT: FailureCategory.TIMEOUT,
    FailureType.CANCELLED: FailureCategory.CANCELLED,
    FailureType.IMAGE_NOT_FOUND: FailureCategory.INFRASTRUCTURE,
    FailureType.RUNTIME_ERROR: FailureCategory.INFRASTRUCTURE,
    FailureType.LOST: FailureCategory.INFRASTRUCTURE,
    FailureType.GPU_UNAVAILABLE: FailureCategory.INFRASTRUCTURE,
    FailureType.UNSCHEDULABLE: FailureCategory.UNSCHEDULABLE,
    FailureType.COMMAND_NOT_FOUND: FailureCategory.APPLICATION,
    FailureType.COMMAND_NOT_EXECUTABLE: FailureCategory.APPLICATION,
    FailureType.OUTPUT_LIMIT: FailureCategory.APPLICATION,
    FailureType.DEPENDENCY_FAILED: FailureCategory.DEPENDENCY,
}
NEVER_RETRIED = frozenset(
    {
        FailureType.CANCELLED,
        FailureType.UNSCHEDULABLE,
        FailureType.COMMAND_NOT_FOUND,
        FailureType.COMMAND_NOT_EXECUTABLE,
        FailureType.DEPENDENCY_FAILED,
    }
)
# a shell's exit codes for a command it could not run (POSIX: 127 not found, 126 found but not
# executable); runtimes and init processes report the same two cases in their own words
COMMAND_EXIT_CODES: Mapping[int, FailureType] = {
    127: FailureType.COMMAND_NOT_FOUND,
    126: FailureType.COMMAND_NOT_EXECUTABLE,
}


class Trigger(StrEnum):
    API = "api"  # a request made it: the job's creation, or a rerun
    SCHEDULE = "schedule"  # the job's cron schedule fired
    RETRY = "retry"  # a failed run's retry policy asked for another attempt
    RESTART = "restart"  # a persistent job's run crashed and its restart policy started anew


class StopReason(StrEnum):
    CANCEL = "cancel"  # the user cancelled the run
    TIMEOUT = "timeout"  # the run's deadline passed
    STOP = "stop"  # the user asked for a clean stop: exit 0 on SIGTERM is a success
    OUTPUT_LIMIT = "output_limit"  # its outputs outgrew their limit
    DISK_FULL = "disk_full"  # the disk its outputs are on was nearly full while it wrote


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    type: FailureType
    message: str

    def to_api(self) -> dict[str, str]:
        return {
            "type": self.type.value,
            "category": self.type.category.value,
            "message": self.message,
        }
