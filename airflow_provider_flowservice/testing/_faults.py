"""Fault injection for the emulator: a queue of one-shot faults plus optional random faults.

Faults let tests reproduce what a real network and a real gateway do to a client (throttling,
5xx, slow answers, dropped and reset connections) on demand and in a known order.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass

SERVER_ERROR_KINDS = ("500", "502", "503", "504")
AFTER_CREATE_KINDS = ("drop_after_create", *(f"{k}_after_create" for k in SERVER_ERROR_KINDS))
"""Faults that let the request be processed (e.g. the run created) and then lose or spoil the answer."""
SLOW_ANSWER_KIND = "slow_after_create"
"""Process the request (e.g. create the run) at once, then hold the answer for ``delay`` seconds."""
FAULT_KINDS = frozenset(
    {"429", *SERVER_ERROR_KINDS, "slow", "drop", *AFTER_CREATE_KINDS, SLOW_ANSWER_KIND, "reset", "401"}
)
FLOW_SERVICE_PREFIX = "/data/foundation/flowservice"
MAX_DELAY = 120.0
"""Upper bound on any injected sleep, so a mistaken ``delay`` cannot hang a test run."""


@dataclass
class Fault:
    """One injected fault; ``times`` counts down as matching requests consume it."""

    kind: str
    method: str | None = None
    path: str | None = None
    times: int = 1
    retry_after: str | None = None
    delay: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        """True when this fault applies to a request.

        With no ``path`` a fault applies to Flow Service requests only, so a test that injects a
        503 is not surprised by its client's token request eating it; give ``path="/ims"`` to hit IMS.
        """
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return path.startswith(FLOW_SERVICE_PREFIX)
        return self.path in path


def check_kind(kind: str) -> str:
    """Return ``kind`` as a string, or raise naming the valid kinds."""
    kind = str(kind)
    if kind not in FAULT_KINDS:
        raise ValueError(f"Unknown fault {kind!r}; use one of {sorted(FAULT_KINDS)}.")
    return kind


class FaultPlan:
    """Thread-safe store of injected and random faults; ``take()`` picks the fault for one request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []
        self._rate = 0.0
        self._kinds: tuple[str, ...] = ()
        self._rng = random.Random()
        self.random_delay = 0.5
        """Sleep used by a random "slow" fault, in seconds."""

    def add(self, fault: Fault) -> None:
        check_kind(fault.kind)
        if fault.times < 1:
            raise ValueError(f"times must be at least 1, got {fault.times}.")
        if fault.delay < 0 or fault.delay > MAX_DELAY:
            raise ValueError(f"delay must be between 0 and {MAX_DELAY} seconds, got {fault.delay}.")
        with self._lock:
            self._queue.append(fault)

    def set_random(
        self, rate: float, kinds: Sequence[str], seed: int | None = None, delay: float = 0.5
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate}.")
        checked = tuple(check_kind(k) for k in kinds)
        if rate > 0 and not checked:
            raise ValueError("set_random_faults needs at least one kind when rate > 0.")
        if not 0 <= delay <= MAX_DELAY:
            raise ValueError(f"delay must be between 0 and {MAX_DELAY} seconds, got {delay}.")
        with self._lock:
            self._rate = rate
            self._kinds = checked
            self._rng = random.Random(seed)
            self.random_delay = delay

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rate = 0.0
            self._kinds = ()

    @property
    def pending(self) -> list[Fault]:
        """Injected faults not yet consumed (copies)."""
        with self._lock:
            return [Fault(**vars(f)) for f in self._queue]

    def take(self, method: str, path: str) -> Fault | None:
        """Consume and return the first matching injected fault, else maybe a random one."""
        with self._lock:
            for index, fault in enumerate(self._queue):
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._queue[index]
                    return Fault(fault.kind, fault.method, fault.path, 1, fault.retry_after, fault.delay)
            if self._rate > 0 and path.startswith(FLOW_SERVICE_PREFIX) and self._rng.random() < self._rate:
                kind = self._rng.choice(self._kinds)
                slow = kind in ("slow", SLOW_ANSWER_KIND)
                return Fault(kind, delay=self.random_delay if slow else 0.0)
        return None
