"""The plan: what a run intends to do for each entry, decided by digest.

Building a plan reads both sides and changes nothing; applying it is separate, and a
dry run is the same plan left unapplied. For each entry the source digest (a pinned
one, or the tag's upstream digest by HEAD) meets the digest the target tag has in the
registry: equal means unchanged, missing means import, different means update.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sync_core.admission import Admission, Deferral
from sync_core.errors import Reach, SourceNotFoundError, SyncError
from sync_core.imagelist import Entry
from sync_core.reference import Digest

log = logging.getLogger(__name__)


class PlanAction(enum.StrEnum):
    """What the plan intends for one entry."""

    IMPORT = "import"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DEFERRED = "deferred"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an entry failed or waits: a stable code, words, and how far it reaches."""

    code: str
    message: str
    reach: Reach | None

    @classmethod
    def of_error(cls, error: SyncError) -> Reason:
        return cls(code=error.reason, message=str(error), reach=error.reach)

    @classmethod
    def of_deferral(cls, deferral: Deferral) -> Reason:
        return cls(code=deferral.reason, message=deferral.message, reach=None)


@dataclass(frozen=True, slots=True)
class PlannedEntry:
    """One entry with both digests and the decision they lead to."""

    entry: Entry
    action: PlanAction
    source_digest: Digest | None
    target_digest: Digest | None
    reason: Reason | None
    seconds: float


@dataclass(frozen=True, slots=True)
class Plan:
    """The decisions for a whole list, in list order."""

    entries: tuple[PlannedEntry, ...]


def decide(source_digest: Digest, target_digest: Digest | None) -> PlanAction:
    """Import when the target is missing, update when it differs, else nothing."""
    if target_digest is None:
        return PlanAction.IMPORT
    if target_digest != source_digest:
        return PlanAction.UPDATE
    return PlanAction.UNCHANGED


SourceResolver = Callable[[Entry], Digest | None]
TargetResolver = Callable[[Entry, Digest], Digest | None]


def build_plan(
    entries: Sequence[Entry],
    plan_one: Callable[[Entry], PlannedEntry],
    concurrency: int,
) -> Plan:
    """Plans every entry, ``concurrency`` at a time; one failure stops no other."""
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="plan") as pool:
        return Plan(entries=tuple(pool.map(plan_one, entries)))


def plan_entry(
    entry: Entry,
    *,
    resolve_source: SourceResolver,
    resolve_target: TargetResolver,
    confirm_source: SourceResolver,
    admission: Admission,
) -> PlannedEntry:
    """Reads both sides for one entry and decides; changes nothing.

    A pinned source needs no read to know its digest; only when the target lacks
    it is the source asked whether it has it, so a plan shows a mistyped digest.
    """
    started = time.monotonic()
    source_digest: Digest | None = None
    target_digest: Digest | None = None

    def planned(action: PlanAction, reason: Reason | None) -> PlannedEntry:
        return PlannedEntry(
            entry=entry,
            action=action,
            source_digest=source_digest,
            target_digest=target_digest,
            reason=reason,
            seconds=time.monotonic() - started,
        )

    deferral = admission.before_reading(entry.source.registry)
    if deferral is not None:
        return planned(PlanAction.DEFERRED, Reason.of_deferral(deferral))
    try:
        source_digest = resolve_source(entry)
        if source_digest is None:
            raise SourceNotFoundError(
                f"the source has no such tag or digest: {entry.source}"
            )
        target_digest = resolve_target(entry, source_digest)
        pinned = entry.source.digest is not None
        if pinned and target_digest != source_digest and confirm_source(entry) is None:
            raise SourceNotFoundError(
                f"the source has no manifest with the pinned digest: {entry.source}"
            )
    except SyncError as error:
        admission.record_failure(entry.source.registry, error)
        log.error(
            "entry not planned line=%s source=%s target=%s reason=%s",
            entry.line,
            entry.source,
            entry.target,
            error,
        )
        return planned(PlanAction.FAILED, Reason.of_error(error))

    action = decide(source_digest, target_digest)
    log.info(
        "entry planned line=%s source=%s target=%s digest=%s action=%s",
        entry.line,
        entry.source,
        entry.target,
        source_digest,
        action,
    )
    return planned(action, None)
