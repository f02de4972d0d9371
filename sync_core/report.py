"""The report of a run: one row an entry, counts by action, and an overall status.

The same document is logged, returned by the HTTP trigger, printed by the command
line with ``--json``, and kept in blob storage. A sync reports outcomes (``imported``,
``updated``, ``unchanged``, ``failed``); a plan reports intentions (``import``,
``update``, ``unchanged``, ``failed``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sync_core.apply import EntryResult, Outcome
from sync_core.imagelist import Entry, Problem
from sync_core.plan import Plan, PlanAction, Reason


class RunStatus(enum.StrEnum):
    """Where a run is: queued or running, then how it ended as a whole."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    REFUSED = "refused"

    @property
    def is_final(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class ReportEntry:
    """One row of the report."""

    line: int
    source: str
    target: str
    digest: str | None
    previous_digest: str | None
    action: str
    reason: str | None
    reason_code: str | None
    reach: str | None
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a run did, or would do, and why."""

    run_id: str
    mode: str
    trigger: str
    status: RunStatus
    started_at: str
    finished_at: str | None
    registry: str
    counts: dict[str, int]
    entries: tuple[ReportEntry, ...]
    message: str | None = None
    blocked_by: str | None = None
    errors: tuple[Problem, ...] = field(default=())
    warnings: tuple[Problem, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["status"] = self.status.value
        return document

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        """One line a person reads first: status and counts."""
        counts = ", ".join(f"{count} {action}" for action, count in self.counts.items())
        return f"{self.mode} {self.status.value}: {counts}"


def rows_from_results(results: Iterable[EntryResult]) -> tuple[ReportEntry, ...]:
    """A sync's rows, in the list's order."""
    return _in_list_order(
        _row(
            r.entry,
            r.outcome,
            digest=r.digest,
            previous_digest=r.previous_digest,
            reason=r.reason,
            seconds=r.seconds,
        )
        for r in results
    )


def rows_from_plan(plan: Plan) -> tuple[ReportEntry, ...]:
    """A plan's rows, in the list's order."""
    return _in_list_order(
        _row(
            p.entry,
            p.action,
            digest=p.source_digest,
            previous_digest=p.target_digest,
            reason=p.reason,
            seconds=p.seconds,
        )
        for p in plan.entries
    )


def _row(
    entry: Entry,
    action: Outcome | PlanAction,
    *,
    digest: str | None,
    previous_digest: str | None,
    reason: Reason | None,
    seconds: float,
) -> ReportEntry:
    reach = reason.reach.value if reason and reason.reach else None
    return ReportEntry(
        line=entry.line,
        source=str(entry.source),
        target=str(entry.target),
        digest=digest,
        previous_digest=previous_digest,
        action=action.value,
        reason=reason.message if reason else None,
        reason_code=reason.code if reason else None,
        reach=reach,
        duration_seconds=round(seconds, 3),
    )


def _in_list_order(rows: Iterable[ReportEntry]) -> tuple[ReportEntry, ...]:
    return tuple(sorted(rows, key=lambda row: row.line))


def count_actions(
    rows: Sequence[ReportEntry], actions: Iterable[str]
) -> dict[str, int]:
    """How many rows took each action; every action is present, zero or not."""
    counts = dict.fromkeys(actions, 0)
    for row in rows:
        counts[row.action] = counts.get(row.action, 0) + 1
    return counts


SYNC_ACTIONS = tuple(outcome.value for outcome in Outcome)
PLAN_ACTIONS = tuple(action.value for action in PlanAction)


def status_of(rows: Sequence[ReportEntry]) -> RunStatus:
    """Failed when every entry failed, partial when any failed or waits, else
    succeeded."""
    failed = sum(1 for row in rows if row.action == Outcome.FAILED.value)
    deferred = sum(1 for row in rows if row.action == Outcome.DEFERRED.value)
    if failed and failed == len(rows):
        return RunStatus.FAILED
    if failed or deferred:
        return RunStatus.PARTIAL
    return RunStatus.SUCCEEDED
