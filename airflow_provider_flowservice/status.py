"""Flow run statuses, compared case-insensitively, grouped into what a waiting client needs to know.

The documentation has no complete list and spells statuses in varying case (``failed`` and
``Failed``), so parsing never raises. A value this provider does not know means *still running*
(:attr:`FlowRunStatus.UNKNOWN`, logged once per value) only while the run reports no completion
time; a run that reports one (``durationSummary.completedAtUTC``) has ended, and an unknown or
still-running status on it is :attr:`FlowRunStatus.ENDED_UNKNOWN`: terminal, never accepted, so the
task fails at once with the status named instead of waiting until its timeout.
"""

from __future__ import annotations

import logging
from enum import StrEnum

log = logging.getLogger(__name__)

_warned: set[str] = set()


class FlowRunStatus(StrEnum):
    """A flow run's ``metrics.statusSummary.status``."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "inProgress"
    SUCCESS = "success"
    PARTIAL_SUCCESS = "partialSuccess"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """Not a Flow Service value: a status this provider does not know, on a run not yet completed."""
    ENDED_UNKNOWN = "endedUnknown"
    """Not a Flow Service value: a run that reports completion with a status we cannot judge."""

    @classmethod
    def parse(cls, raw: object, *, completed: bool = False) -> FlowRunStatus:
        """Map an API value to a member, case-insensitively.

        Unknown, missing or non-string -> ``UNKNOWN`` (still running); with ``completed=True``
        (the run reports ``completedAtUTC``) anything but a known terminal status ->
        ``ENDED_UNKNOWN``.
        """
        if isinstance(raw, str) and raw:
            member = _BY_LOWER.get(raw.strip().lower())
            if member is not None:
                return cls.ENDED_UNKNOWN if completed and not member.is_terminal else member
        if completed:
            return cls.ENDED_UNKNOWN  # the outcome rules name the status in the task's error
        key = repr(raw)
        if len(key) > 200:
            key = key[:197] + "..."
        if raw is not None and not isinstance(raw, str):
            key += f" (a JSON {type(raw).__name__}, not a string)"
        if key not in _warned:
            _warned.add(key)
            log.warning(
                "Flow Service returned run status %s, which this provider does not know; "
                "treating the run as still running.",
                key,
            )
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """True once the run has ended (success, partialSuccess, failed, or completed otherwise)."""
        return self in TERMINAL_STATUSES

    @property
    def is_running(self) -> bool:
        """True while the run may still change (scheduled, inProgress, or unknown and not completed)."""
        return not self.is_terminal

    @property
    def state(self) -> RunState:
        """The coarse state a caller decides on."""
        return _STATE[self]


class RunState(StrEnum):
    """What a status means for a waiting client."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    ENDED_UNKNOWN = "ended_unknown"


_PSEUDO = (FlowRunStatus.UNKNOWN, FlowRunStatus.ENDED_UNKNOWN)
_BY_LOWER = {m.value.lower(): m for m in FlowRunStatus if m not in _PSEUDO}
TERMINAL_STATUSES = frozenset(
    {FlowRunStatus.SUCCESS, FlowRunStatus.PARTIAL_SUCCESS, FlowRunStatus.FAILED, FlowRunStatus.ENDED_UNKNOWN}
)
_STATE = {
    FlowRunStatus.SCHEDULED: RunState.RUNNING,
    FlowRunStatus.IN_PROGRESS: RunState.RUNNING,
    FlowRunStatus.UNKNOWN: RunState.RUNNING,
    FlowRunStatus.SUCCESS: RunState.SUCCEEDED,
    FlowRunStatus.PARTIAL_SUCCESS: RunState.PARTIALLY_SUCCEEDED,
    FlowRunStatus.FAILED: RunState.FAILED,
    FlowRunStatus.ENDED_UNKNOWN: RunState.ENDED_UNKNOWN,
}


__all__ = ["FlowRunStatus", "RunState"]
