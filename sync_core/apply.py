"""Applying a plan: import each change by digest, then check the target tag.

ACR has been seen to report an import as succeeded while the tag pointed elsewhere,
so every import is verified by reading the target again. Imports run concurrently
within the run's bound; one failing import stops no other, but a fatal one stops
the run, and a rate-limited registry's remaining imports wait for the next run.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from sync_core.admission import Admission
from sync_core.errors import SyncError, VerificationError
from sync_core.imagelist import Entry
from sync_core.plan import Plan, PlanAction, PlannedEntry, Reason
from sync_core.reference import Digest, is_docker_hub

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """What a run did for one entry."""

    IMPORTED = "imported"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DEFERRED = "deferred"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class EntryResult:
    """The outcome for one entry, with the digest it was decided on."""

    entry: Entry
    outcome: Outcome
    digest: Digest | None
    previous_digest: Digest | None
    reason: Reason | None
    seconds: float


# Imports ``entry`` at ``digest``, giving up at a deadline on the monotonic clock,
# and calls the last argument once ARM has accepted the import.
ImportDigest = Callable[[Entry, Digest, float, Callable[[], None]], None]
ReadTarget = Callable[[Entry, Digest], Digest | None]

T = TypeVar("T")

_DONE = {PlanAction.IMPORT: Outcome.IMPORTED, PlanAction.UPDATE: Outcome.UPDATED}
_AS_PLANNED = {
    PlanAction.UNCHANGED: Outcome.UNCHANGED,
    PlanAction.DEFERRED: Outcome.DEFERRED,
    PlanAction.FAILED: Outcome.FAILED,
}


def apply_plan(
    plan: Plan,
    *,
    import_digest: ImportDigest,
    read_target: ReadTarget,
    admission: Admission,
    concurrency: int,
) -> tuple[EntryResult, ...]:
    """Carries out every change of a finished plan; results in list order."""
    return plan_and_apply(
        plan.entries,
        plan_one=lambda planned: planned,
        import_digest=import_digest,
        read_target=read_target,
        admission=admission,
        read_concurrency=1,
        import_concurrency=concurrency,
    )


def plan_and_apply(
    items: Sequence[T],
    *,
    plan_one: Callable[[T], PlannedEntry],
    import_digest: ImportDigest,
    read_target: ReadTarget,
    admission: Admission,
    read_concurrency: int,
    import_concurrency: int,
) -> tuple[EntryResult, ...]:
    """Plans each item and applies each change as soon as it is planned.

    Reading the registries and importing overlap: ``read_concurrency`` entries are
    planned at once, and each change goes to a separate pool of
    ``import_concurrency`` imports, the bound ACR takes. Each entry's plan is still
    decided, without side effects, before it is applied. The first import runs
    alone until ARM accepts it: when the identity may not import at all, ARM
    refuses at once and the run stops after that one attempt instead of one attempt
    per worker. The first import from Docker Hub runs alone until it ends: when Docker
    Hub rate limits ACR, its other entries are held back instead of all failing at
    once. Results come in list order.
    """
    first = _FirstAlone()
    first_from_docker_hub = _FirstAlone()

    def first_alone(planned: PlannedEntry) -> EntryResult:
        def work(accepted: Callable[[], None]) -> EntryResult:
            return _apply_change(
                planned, import_digest, read_target, admission, accepted
            )

        if not is_docker_hub(planned.entry.source.registry):
            return first.run(work)
        return first.run(
            lambda accepted: first_from_docker_hub.run(lambda _: work(accepted))
        )

    with (
        ThreadPoolExecutor(import_concurrency, thread_name_prefix="import") as imports,
        ThreadPoolExecutor(read_concurrency, thread_name_prefix="plan") as reads,
    ):

        def plan_then_apply(item: T) -> Future[EntryResult]:
            planned = plan_one(item)
            if planned.action not in _DONE:
                done: Future[EntryResult] = Future()
                done.set_result(
                    _result(planned, _AS_PLANNED[planned.action], planned.reason, 0.0)
                )
                return done
            return imports.submit(first_alone, planned)

        applied = [reads.submit(plan_then_apply, item) for item in items]
        return tuple(future.result().result() for future in applied)


class _FirstAlone:
    """Lets the first caller go alone until it releases; everyone else then goes.

    The first caller's work receives the release; it is released at the latest when
    that work ends. Later callers' work receives a release that does nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claimed = False
        self._released = threading.Event()

    def run(self, work: Callable[[Callable[[], None]], EntryResult]) -> EntryResult:
        with self._lock:
            is_first, self._claimed = not self._claimed, True
        if not is_first:
            self._released.wait()
            return work(_nothing)
        try:
            return work(self._released.set)
        finally:
            self._released.set()


def _nothing() -> None:
    """A release for callers that hold nothing."""


def _apply_change(
    planned: PlannedEntry,
    import_digest: ImportDigest,
    read_target: ReadTarget,
    admission: Admission,
    accepted: Callable[[], None],
) -> EntryResult:
    started = time.monotonic()
    entry, digest = planned.entry, planned.source_digest
    assert digest is not None, "a planned change always has a source digest"
    deferral = admission.before_import(entry.source.registry)
    if deferral is not None:
        log.warning(
            "import deferred line=%s source=%s target=%s reason=%s",
            entry.line,
            entry.source,
            entry.target,
            deferral.message,
        )
        return _result(planned, Outcome.DEFERRED, Reason.of_deferral(deferral), 0.0)

    try:
        import_digest(entry, digest, admission.import_deadline(), accepted)
        landed = read_target(entry, digest)
        if landed != digest:
            raise VerificationError(
                f"the target must resolve to the imported digest after an import: "
                f"{entry.target} resolves to {landed or 'nothing'}, expected {digest}"
            )
    except SyncError as error:
        admission.record_failure(entry.source.registry, error)
        log.error(
            "import failed line=%s source=%s target=%s digest=%s reason=%s",
            entry.line,
            entry.source,
            entry.target,
            digest,
            error,
        )
        elapsed = time.monotonic() - started
        return _result(planned, Outcome.FAILED, Reason.of_error(error), elapsed)

    outcome = _DONE[planned.action]
    log.info(
        "import verified line=%s source=%s target=%s digest=%s action=%s",
        entry.line,
        entry.source,
        entry.target,
        digest,
        outcome,
    )
    return _result(planned, outcome, None, time.monotonic() - started)


def _result(
    planned: PlannedEntry, outcome: Outcome, reason: Reason | None, seconds: float
) -> EntryResult:
    return EntryResult(
        entry=planned.entry,
        outcome=outcome,
        digest=planned.source_digest,
        previous_digest=planned.target_digest,
        reason=reason,
        seconds=planned.seconds + seconds,
    )
