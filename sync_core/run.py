"""One run, from settings to report: read the list, plan, apply, report.

Every way a run can end produces a report: a bad setting, an unreadable or invalid
list (then nothing is imported), or the entries' own results. The triggers and the
command line call ``execute`` and nothing below it.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core.exceptions import AzureError

from sync_core.acr import Importer, TargetRegistry
from sync_core.apply import apply_plan
from sync_core.errors import InvalidImageList, SyncError
from sync_core.http import HttpOptions
from sync_core.identity import build_credential
from sync_core.imagelist import (
    DEFAULT_LIMITS,
    Entry,
    ImageList,
    Problem,
    parse_image_list,
)
from sync_core.plan import Plan, build_plan
from sync_core.reference import Digest
from sync_core.report import (
    PLAN_ACTIONS,
    SYNC_ACTIONS,
    ReportEntry,
    RunReport,
    RunStatus,
    count_actions,
    rows_from_plan,
    rows_from_results,
    status_of,
)
from sync_core.settings import Settings
from sync_core.sources import SourceRegistries
from sync_core.storage import read_image_list, save_report

log = logging.getLogger(__name__)


class Mode(enum.StrEnum):
    """A sync imports what the plan says; a plan only reports it."""

    SYNC = "sync"
    PLAN = "plan"


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What to run and why; ``list_data`` replaces the published list when given."""

    mode: Mode
    trigger: str
    list_data: bytes | None = None


def execute(request: RunRequest, environ: Mapping[str, str]) -> RunReport:
    """Runs once and returns the report; raises nothing for a failed run."""
    clock = _Clock(request)
    log.info(
        "run started run_id=%s mode=%s trigger=%s",
        clock.run_id,
        request.mode,
        request.trigger,
    )
    try:
        settings = Settings.from_environ(environ)
    except SyncError as error:
        return _finish(clock.refused(str(error), registry=""), settings=None)
    try:
        report = _run(request, settings, environ, clock)
    except InvalidImageList as error:
        report = clock.refused(
            str(error),
            registry=settings.login_server,
            errors=error.errors,
            warnings=error.warnings,
        )
    except SyncError as error:
        report = clock.refused(str(error), registry=settings.login_server)
    return _finish(report, settings=settings)


def _run(
    request: RunRequest,
    settings: Settings,
    environ: Mapping[str, str],
    clock: _Clock,
) -> RunReport:
    data = request.list_data
    if data is None:
        data = read_image_list(settings.storage, max_bytes=DEFAULT_LIMITS.max_bytes)
    image_list = parse_image_list(data, login_server=settings.login_server)
    credential = build_credential(settings, environ)
    options = HttpOptions(
        pool_size=settings.max_concurrency * 2,
        request_timeout_seconds=settings.request_timeout_seconds,
    )

    with ExitStack() as stack:
        sources = SourceRegistries(settings, options)
        stack.callback(sources.close)
        target = TargetRegistry(settings, credential, options)
        stack.callback(target.close)
        plan = _plan(image_list, settings, sources, target)
        if request.mode is Mode.PLAN:
            rows = rows_from_plan(plan)
            return clock.report(rows, PLAN_ACTIONS, settings, image_list)

        importer = Importer(settings, credential, options)
        stack.callback(importer.close)
        results = apply_plan(
            plan,
            import_digest=lambda entry, digest: importer.import_digest(
                entry.source, digest, entry.target
            ),
            read_target=lambda entry, digest: target.current_digest(
                entry.target, digest
            ),
            concurrency=settings.max_concurrency,
        )
        return clock.report(
            rows_from_results(results), SYNC_ACTIONS, settings, image_list
        )


def _plan(
    image_list: ImageList,
    settings: Settings,
    sources: SourceRegistries,
    target: TargetRegistry,
) -> Plan:
    entries = image_list.entries
    _authorize("source", lambda: sources.authorize(e.source for e in entries))
    _authorize(
        "target",
        lambda: target.authorize(sorted({e.target.repository for e in entries})),
    )

    def resolve_target(entry: Entry, digest: Digest) -> Digest | None:
        return target.current_digest(entry.target, digest)

    return build_plan(
        entries,
        resolve_source=lambda entry: sources.resolve(entry.source),
        resolve_target=resolve_target,
        concurrency=settings.max_concurrency,
    )


def _authorize(side: str, action: Callable[[], None]) -> None:
    """Gets tokens in bulk; when that fails, each entry asks for its own."""
    try:
        action()
    except SyncError as error:
        log.warning("bulk token request failed side=%s reason=%s", side, error)


class _Clock:
    """The run's identity and timing, and the reports it can end with."""

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        self.run_id = uuid.uuid4().hex
        self.started_at = _now()
        self.started = time.monotonic()

    def report(
        self,
        rows: tuple[ReportEntry, ...],
        actions: tuple[str, ...],
        settings: Settings,
        image_list: ImageList,
    ) -> RunReport:
        return RunReport(
            run_id=self.run_id,
            mode=self.request.mode.value,
            trigger=self.request.trigger,
            status=status_of(rows),
            started_at=self.started_at,
            finished_at=_now(),
            registry=settings.login_server,
            counts=count_actions(rows, actions),
            entries=rows,
            warnings=image_list.warnings,
        )

    def refused(
        self,
        message: str,
        *,
        registry: str,
        errors: tuple[Problem, ...] = (),
        warnings: tuple[Problem, ...] = (),
    ) -> RunReport:
        actions = PLAN_ACTIONS if self.request.mode is Mode.PLAN else SYNC_ACTIONS
        return RunReport(
            run_id=self.run_id,
            mode=self.request.mode.value,
            trigger=self.request.trigger,
            status=RunStatus.FAILED,
            started_at=self.started_at,
            finished_at=_now(),
            registry=registry,
            counts=dict.fromkeys(actions, 0),
            entries=(),
            message=message,
            errors=errors,
            warnings=warnings,
        )


def _finish(report: RunReport, *, settings: Settings | None) -> RunReport:
    log.log(
        logging.ERROR if report.status is RunStatus.FAILED else logging.INFO,
        "run finished run_id=%s mode=%s status=%s counts=%s message=%s",
        report.run_id,
        report.mode,
        report.status,
        report.counts,
        report.message,
    )
    log.info("run report run_id=%s report=%s", report.run_id, report.to_json())
    if settings is not None:
        try:
            save_report(settings.storage, report)
        except AzureError as error:
            log.error(
                "report not stored run_id=%s container=%s reason=%s",
                report.run_id,
                settings.storage.report_container,
                error.message,
            )
    return report


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
