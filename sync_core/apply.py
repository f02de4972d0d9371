"""Applying a plan: import each change by digest, then check the target tag.

ACR has been seen to report an import as succeeded while the tag pointed elsewhere,
so every import is verified by reading the target again. Imports run concurrently
within the run's bound; one failing import stops no other, but a fatal one stops
the run, and a rate-limited registry's remaining imports wait for the next run.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sync_core.admission import Admission
from sync_core.errors import SyncError, VerificationError
from sync_core.imagelist import Entry
from sync_core.plan import Plan, PlanAction, PlannedEntry, Reason
from sync_core.reference import Digest

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


# Imports ``entry`` at ``digest``, giving up at a deadline on the monotonic clock.
ImportDigest = Callable[[Entry, Digest, float], None]
ReadTarget = Callable[[Entry, Digest], Digest | None]

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
    """Carries out every change in the plan and reports each entry in list order.

    The first import runs alone: when the identity may not import at all, the run
    stops after that one attempt instead of one attempt per worker.
    """
    results = {
        index: _result(planned, _AS_PLANNED[planned.action], planned.reason, 0.0)
        for index, planned in enumerate(plan.entries)
        if planned.action not in _DONE
    }
    changes = [i for i, planned in enumerate(plan.entries) if planned.action in _DONE]

    def apply_one(index: int) -> EntryResult:
        return _apply_change(plan.entries[index], import_digest, read_target, admission)

    if changes:
        results[changes[0]] = apply_one(changes[0])
    with ThreadPoolExecutor(
        max_workers=concurrency, thread_name_prefix="import"
    ) as pool:
        results.update(zip(changes[1:], pool.map(apply_one, changes[1:]), strict=True))
    return tuple(results[index] for index in range(len(plan.entries)))


def _apply_change(
    planned: PlannedEntry,
    import_digest: ImportDigest,
    read_target: ReadTarget,
    admission: Admission,
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
        import_digest(entry, digest, admission.import_deadline())
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
