"""Whether a run may still start work on an entry, and why not when it may not.

Three things hold work back: a fatal failure stops the run (nothing more is
started); the run's time budget (no import starts unless it can finish before the
budget ends, so the run reports before the host stops it); and a registry that rate
limits (after a 429, or when Docker Hub's ``ratelimit-remaining`` falls below the
floor, that registry's remaining entries wait for the next run while the others go
on). Entries held back are reported as deferred, with the reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sync_core.errors import FatalRunError, RateLimitedError, Reach, SyncError
from sync_core.reference import is_docker_hub


@dataclass(frozen=True, slots=True)
class Deferral:
    """Why an entry was not attempted: a stable reason code and words."""

    reason: str
    message: str


class Admission:
    """Decides, entry by entry, whether work may start; safe across threads."""

    def __init__(
        self,
        *,
        budget_seconds: float,
        import_seconds: float,
        dockerhub_pull_floor: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.deadline = clock() + budget_seconds
        self._import_seconds = import_seconds
        self._floor = dockerhub_pull_floor
        self._lock = threading.Lock()
        self._stopped: FatalRunError | None = None
        self._held: dict[str, str] = {}
        self._dockerhub_pulls: int | None = None

    @property
    def stopped(self) -> FatalRunError | None:
        """The failure that stopped the run, if one did."""
        return self._stopped

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - self._clock())

    def import_deadline(self) -> float:
        """When an import started now must be given up: its own limit or the run's."""
        return min(self._clock() + self._import_seconds, self.deadline)

    def before_reading(self, registry: str) -> Deferral | None:
        """Whether the plan may still read this entry's source."""
        with self._lock:
            return self._stop_reason() or self._hold_reason(registry)

    def before_import(self, registry: str) -> Deferral | None:
        """Whether an import from this registry may start; counts a Docker Hub pull."""
        with self._lock:
            deferral = self._stop_reason() or self._hold_reason(registry)
            if deferral is not None:
                return deferral
            if self.seconds_left() < self._import_seconds:
                return Deferral(
                    "budget-exhausted",
                    f"not attempted: less than the {self._import_seconds:g} s an "
                    f"import may take is left of the run's time budget",
                )
            if is_docker_hub(registry) and self._dockerhub_pulls is not None:
                if self._dockerhub_pulls <= self._floor:
                    return Deferral(
                        "rate-limit-floor",
                        f"held back: Docker Hub has {self._dockerhub_pulls} pulls "
                        f"left, at or below the floor of {self._floor} "
                        f"(ACRSYNC_DOCKERHUB_PULL_FLOOR)",
                    )
                self._dockerhub_pulls -= 1
            return None

    def note_pulls_remaining(self, registry: str, remaining: int | None) -> None:
        """Records Docker Hub's latest ``ratelimit-remaining``."""
        if remaining is None or not is_docker_hub(registry):
            return
        with self._lock:
            self._dockerhub_pulls = remaining

    def record_failure(self, registry: str, error: SyncError) -> None:
        """Stops the run on a fatal failure; holds a registry back after a 429."""
        with self._lock:
            if error.reach is Reach.FATAL and self._stopped is None:
                assert isinstance(error, FatalRunError)
                self._stopped = error
            if isinstance(error, RateLimitedError):
                self._held.setdefault(registry, str(error))

    def _stop_reason(self) -> Deferral | None:
        if self._stopped is None:
            return None
        return Deferral(
            "run-stopped", f"not attempted: the run stopped: {self._stopped}"
        )

    def _hold_reason(self, registry: str) -> Deferral | None:
        cause = self._held.get(registry)
        if cause is None:
            return None
        return Deferral(
            "rate-limited",
            f"held back: {registry} rate limited this run earlier ({cause})",
        )
