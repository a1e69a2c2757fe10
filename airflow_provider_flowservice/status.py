"""Flow run statuses, compared case-insensitively, grouped into what a waiting client needs to know.

The documentation has no complete list and spells statuses in varying case (``failed`` and
``Failed``), so parsing never raises: an unknown value maps to :attr:`FlowRunStatus.UNKNOWN`, which
counts as *still running* and is logged once per value, so a wait stays bounded by its timeout.
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

    @classmethod
    def parse(cls, raw: object) -> FlowRunStatus:
        """Map an API value to a member, case-insensitively; unknown, missing or non-string -> ``UNKNOWN``."""
        if isinstance(raw, str) and raw:
            member = _BY_LOWER.get(raw.strip().lower())
            if member is not None:
                return member
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
        """True once the run has ended (success, partialSuccess or failed)."""
        return self in TERMINAL_STATUSES

    @property
    def is_running(self) -> bool:
        """True while the run may still change (scheduled, inProgress or an unknown value)."""
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


_BY_LOWER = {m.value.lower(): m for m in FlowRunStatus if m is not FlowRunStatus.UNKNOWN}
TERMINAL_STATUSES = frozenset({FlowRunStatus.SUCCESS, FlowRunStatus.PARTIAL_SUCCESS, FlowRunStatus.FAILED})
_STATE = {
    FlowRunStatus.SCHEDULED: RunState.RUNNING,
    FlowRunStatus.IN_PROGRESS: RunState.RUNNING,
    FlowRunStatus.UNKNOWN: RunState.RUNNING,
    FlowRunStatus.SUCCESS: RunState.SUCCEEDED,
    FlowRunStatus.PARTIAL_SUCCESS: RunState.PARTIALLY_SUCCEEDED,
    FlowRunStatus.FAILED: RunState.FAILED,
}
