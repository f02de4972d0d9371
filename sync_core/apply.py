"""Applying a plan: import each change by digest, then check the target tag.

ACR has been seen to report an import as succeeded while the tag pointed elsewhere,
so every import is verified by reading the target again. Imports run concurrently
within the run's bound; one failing import stops no other.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sync_core.errors import SyncError
from sync_core.imagelist import Entry
from sync_core.plan import Plan, PlanAction, PlannedEntry
from sync_core.reference import Digest

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """What a run did for one entry."""

    IMPORTED = "imported"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class EntryResult:
    """The outcome for one entry, with the digest it was decided on."""

    entry: Entry
    outcome: Outcome
    digest: Digest | None
    previous_digest: Digest | None
    reason: str | None
    seconds: float


ImportDigest = Callable[[Entry, Digest], None]
ReadTarget = Callable[[Entry, Digest], Digest | None]

_DONE = {PlanAction.IMPORT: Outcome.IMPORTED, PlanAction.UPDATE: Outcome.UPDATED}


def apply_plan(
    plan: Plan,
    *,
    import_digest: ImportDigest,
    read_target: ReadTarget,
    concurrency: int,
) -> tuple[EntryResult, ...]:
    """Carries out every change in the plan and reports each entry in list order."""

    def apply_one(planned: PlannedEntry) -> EntryResult:
        if planned.action in _DONE:
            return _apply_change(planned, import_digest, read_target)
        return _unapplied(planned)

    with ThreadPoolExecutor(
        max_workers=concurrency, thread_name_prefix="import"
    ) as pool:
        return tuple(pool.map(apply_one, plan.entries))


def _unapplied(planned: PlannedEntry) -> EntryResult:
    outcome = Outcome.FAILED if planned.action is PlanAction.FAILED else None
    return EntryResult(
        entry=planned.entry,
        outcome=outcome or Outcome.UNCHANGED,
        digest=planned.source_digest,
        previous_digest=planned.target_digest,
        reason=planned.reason,
        seconds=planned.seconds,
    )


def _apply_change(
    planned: PlannedEntry, import_digest: ImportDigest, read_target: ReadTarget
) -> EntryResult:
    started = time.monotonic()
    entry, digest = planned.entry, planned.source_digest
    reason: str | None
    assert digest is not None, "a planned change always has a source digest"
    try:
        import_digest(entry, digest)
        landed = read_target(entry, digest)
        if landed != digest:
            raise SyncError(
                f"the target must resolve to the imported digest after an import: "
                f"{entry.target} resolves to {landed or 'nothing'}, expected {digest}"
            )
    except SyncError as error:
        log.error(
            "import failed line=%s source=%s target=%s digest=%s reason=%s",
            entry.line,
            entry.source,
            entry.target,
            digest,
            error,
        )
        outcome, reason = Outcome.FAILED, str(error)
    else:
        outcome, reason = _DONE[planned.action], None
        log.info(
            "import verified line=%s source=%s target=%s digest=%s action=%s",
            entry.line,
            entry.source,
            entry.target,
            digest,
            outcome,
        )
    return EntryResult(
        entry=entry,
        outcome=outcome,
        digest=digest,
        previous_digest=planned.target_digest,
        reason=reason,
        seconds=planned.seconds + time.monotonic() - started,
    )
