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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from azure.core.exceptions import AzureError

from sync_core.acr import Importer, TargetRegistry
from sync_core.admission import Admission
from sync_core.apply import plan_and_apply
from sync_core.distribution import DistributionClient
from sync_core.errors import InvalidImageList, Reach, SyncError
from sync_core.http import HttpOptions
from sync_core.identity import build_credential
from sync_core.imagelist import (
    DEFAULT_LIMITS,
    Entry,
    ImageList,
    Problem,
    parse_image_list,
)
from sync_core.plan import PlannedEntry, build_plan, plan_entry
from sync_core.reference import Digest, is_docker_hub
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
from sync_core.runstore import AlreadyRunningError, RunStore
from sync_core.settings import Settings
from sync_core.sources import SourceRegistries
from sync_core.storage import read_image_list
from sync_core.tokens import get_entra_token

log = logging.getLogger(__name__)


class Mode(enum.StrEnum):
    """A sync imports what the plan says; a plan only reports it."""

    SYNC = "sync"
    PLAN = "plan"


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What to run and why.

    ``list_data`` replaces the published list when given; ``run_id`` is set when the
    run was announced before it started (a queued run), else one is made;
    ``budget_seconds`` shortens the run's time budget (a plan answered over HTTP).
    """

    mode: Mode
    trigger: str
    list_data: bytes | None = None
    run_id: str | None = None
    budget_seconds: float | None = None


def execute(request: RunRequest, environ: Mapping[str, str]) -> RunReport:
    """Runs once and returns the report; raises nothing for a failed run.

    A sync holds the one-run lock while it works; a plan changes nothing and needs
    no lock. The report is stored when the run starts and when it ends.
    """
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
        return _logged(clock.ended(RunStatus.FAILED, str(error), registry=""))

    with RunStore(settings.storage) as store:
        try:
            with _lock_for(request, store, clock.run_id):
                _store(store, clock.running(settings), latest=False)
                report = _run_reporting_errors(request, settings, environ, clock)
        except AlreadyRunningError as error:
            report = clock.ended(
                RunStatus.REFUSED,
                str(error),
                registry=settings.login_server,
                blocked_by=error.run_id,
            )
        except AzureError as error:
            report = clock.ended(
                RunStatus.FAILED,
                f"the run lock must be taken before a sync: {error.message}",
                registry=settings.login_server,
            )
        # A sync refused for the lock did nothing: the latest report stays the
        # one of the run that holds it, or held it last.
        latest = request.mode is Mode.SYNC and report.blocked_by is None
        _store(store, report, latest=latest)
    return _logged(report)


def _lock_for(
    request: RunRequest, store: RunStore, run_id: str
) -> AbstractContextManager[object]:
    return store.lock(run_id) if request.mode is Mode.SYNC else nullcontext()


def _run_reporting_errors(
    request: RunRequest,
    settings: Settings,
    environ: Mapping[str, str],
    clock: _Clock,
) -> RunReport:
    registry = settings.login_server
    try:
        return _run(request, settings, environ, clock)
    except InvalidImageList as error:
        return clock.ended(
            RunStatus.REFUSED,
            str(error),
            registry=registry,
            errors=error.errors,
            warnings=error.warnings,
        )
    except SyncError as error:
        return clock.ended(RunStatus.FAILED, str(error), registry=registry)
    except Exception as error:
        # A defect must still end in a stored report and release the lock.
        log.exception("run crashed run_id=%s", clock.run_id)
        return clock.ended(
            RunStatus.FAILED,
            f"the run stopped on an unexpected error: {type(error).__name__}",
            registry=registry,
        )


def _store(store: RunStore, report: RunReport, *, latest: bool) -> None:
    """Keeps the report; a storage failure is logged and the run goes on."""
    try:
        store.save(report, latest=latest)
    except AzureError as error:
        log.error(
            "report not stored run_id=%s status=%s reason=%s",
            report.run_id,
            report.status,
            error.message,
        )


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
    budget = request.budget_seconds or settings.run_budget_seconds
    admission = Admission(
        budget_seconds=budget,
        import_seconds=min(settings.import_timeout_seconds, budget),
        dockerhub_pull_floor=settings.dockerhub_pull_floor,
    )
    options = HttpOptions(
        pool_size=settings.read_concurrency + settings.max_concurrency,
        request_timeout_seconds=settings.request_timeout_seconds,
        max_wait_seconds=settings.max_retry_wait_seconds,
        deadline=admission.deadline,
    )
    credential = build_credential(settings, environ)

    with ExitStack() as stack:
        sources = SourceRegistries(
            settings, options, on_pulls_remaining=admission.note_pulls_remaining
        )
        stack.callback(sources.close)
        target = TargetRegistry(settings, credential, options)
        stack.callback(target.close)
        entries = sorted(image_list.entries, key=_reading_order)
        clients = [
            *sources.clients_for(entry.source for entry in entries),
            (target.client, sorted({entry.target.repository for entry in entries})),
        ]
        _authorize(
            clients,
            settings.read_concurrency,
            # A wrong identity stops the run with one clear error, before any
            # entry is tried.
            first=[
                lambda: get_entra_token(
                    credential, settings.arm_audience + "/.default"
                ),
                target.prepare,
            ],
        )

        def read_target(entry: Entry, digest: Digest) -> Digest | None:
            return target.current_digest(entry.target, digest)

        def plan_one(entry: Entry) -> PlannedEntry:
            return plan_entry(
                entry,
                resolve_source=lambda e: sources.resolve(e.source),
                resolve_target=read_target,
                confirm_source=lambda e: sources.confirm(e.source),
                admission=admission,
            )

        if request.mode is Mode.PLAN:
            plan = build_plan(entries, plan_one, settings.read_concurrency)
            rows = rows_from_plan(plan)
            return clock.report(rows, PLAN_ACTIONS, settings, image_list, admission)

        importer = Importer(settings, credential, options)
        stack.callback(importer.close)
        results = plan_and_apply(
            entries,
            plan_one=plan_one,
            import_digest=lambda entry, digest, deadline, accepted: (
                importer.import_digest(
                    entry.source,
                    digest,
                    entry.target,
                    deadline=deadline,
                    accepted=accepted,
                )
            ),
            read_target=read_target,
            admission=admission,
            read_concurrency=settings.read_concurrency,
            import_concurrency=settings.max_concurrency,
        )
        rows = rows_from_results(results)
        return clock.report(rows, SYNC_ACTIONS, settings, image_list, admission)


def _reading_order(entry: Entry) -> tuple[bool, str]:
    """Entries from one registry one after another, so each worker keeps few
    connections open; Docker Hub's last, as its first import goes alone. The report
    keeps the list's order."""
    return is_docker_hub(entry.source.registry), entry.source.registry


def _authorize(
    clients: Sequence[tuple[DistributionClient, Sequence[str]]],
    concurrency: int,
    *,
    first: Sequence[Callable[[], object]],
) -> None:
    """Gets every registry's pull tokens up front, in few requests and in parallel.

    First, together: each registry's challenge and the ``first`` steps (the
    identity's tokens); then the token requests, each covering many repositories.
    A failed token request only costs requests: each entry then asks for its own.
    A fatal failure (the identity) stops the run.
    """

    def guarded(action: Callable[[], object], name: str) -> None:
        try:
            action()
        except SyncError as error:
            if error.reach is Reach.FATAL:
                raise
            log.warning("bulk token request failed registry=%s reason=%s", name, error)

    with ThreadPoolExecutor(concurrency, thread_name_prefix="authorize") as pool:
        started = [pool.submit(guarded, step, "identity") for step in first]
        started += [
            pool.submit(guarded, client.learn_challenge, client.name)
            for client, _ in clients
        ]
        for future in started:
            future.result()
        batches = [
            pool.submit(guarded, partial(client.authorize, batch), client.name)
            for client, repositories in clients
            for batch in client.token_batches(repositories)
        ]
        for future in batches:
            future.result()


class _Clock:
    """The run's identity and timing, and the reports it can end with."""

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        self.run_id = request.run_id or uuid.uuid4().hex
        self.started_at = _now()
        self.started = time.monotonic()

    def report(
        self,
        rows: tuple[ReportEntry, ...],
        actions: tuple[str, ...],
        settings: Settings,
        image_list: ImageList,
        admission: Admission,
    ) -> RunReport:
        stopped = admission.stopped
        return RunReport(
            run_id=self.run_id,
            mode=self.request.mode.value,
            trigger=self.request.trigger,
            status=RunStatus.FAILED if stopped else status_of(rows),
            message=str(stopped) if stopped else None,
            started_at=self.started_at,
            finished_at=_now(),
            registry=settings.login_server,
            counts=count_actions(rows, actions),
            entries=rows,
            warnings=image_list.warnings,
        )

    def running(self, settings: Settings) -> RunReport:
        return self._report(RunStatus.RUNNING, registry=settings.login_server)

    def ended(
        self,
        status: RunStatus,
        message: str,
        *,
        registry: str,
        errors: tuple[Problem, ...] = (),
        warnings: tuple[Problem, ...] = (),
        blocked_by: str | None = None,
    ) -> RunReport:
        """A run that ended before any entry: nothing imported, and why."""
        return self._report(
            status,
            registry=registry,
            message=message,
            errors=errors,
            warnings=warnings,
            blocked_by=blocked_by,
        )

    def _report(self, status: RunStatus, *, registry: str, **details: Any) -> RunReport:
        actions = PLAN_ACTIONS if self.request.mode is Mode.PLAN else SYNC_ACTIONS
        return RunReport(
            run_id=self.run_id,
            mode=self.request.mode.value,
            trigger=self.request.trigger,
            status=status,
            started_at=self.started_at,
            finished_at=_now() if status.is_final else None,
            registry=registry,
            counts=dict.fromkeys(actions, 0),
            entries=(),
            **details,
        )


def _logged(report: RunReport) -> RunReport:
    log.log(
        logging.INFO if report.status is RunStatus.SUCCEEDED else logging.ERROR,
        "run finished run_id=%s mode=%s status=%s counts=%s message=%s",
        report.run_id,
        report.mode,
        report.status,
        report.counts,
        report.message,
    )
    log.info("run report run_id=%s report=%s", report.run_id, report.to_json())
    return report


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
