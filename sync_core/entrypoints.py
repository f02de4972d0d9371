"""What the Function App's timer and queue triggers call: thin, and free of any
trigger type. The HTTP routes live in ``sync_core.api``.

The heavy Azure SDKs load on the first run, not when the host indexes the app, so
cold starts stay short.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync_core.errors import SyncError
from sync_core.runqueue import InvalidRunMessage, RunMessage

if TYPE_CHECKING:
    from sync_core.runstore import RunStore

log = logging.getLogger(__name__)

# The Azure SDKs log every request at INFO; a run's own records are what matter.
logging.getLogger("azure").setLevel(logging.WARNING)


class RunFailedError(SyncError):
    """Raised by the timer so that the invocation fails and alerts can see it."""


def on_timer(*, past_due: bool) -> None:
    """The nightly run; raises when it failed or its list is invalid.

    A run refused because another holds the lock (the timer fired twice, or a run
    started over HTTP is going) is no failure: that run does the work.
    """
    from sync_core.report import RunStatus
    from sync_core.run import Mode, RunRequest, execute

    if past_due:
        log.warning("timer is past due; running now")
    report = execute(RunRequest(mode=Mode.SYNC, trigger="timer"), os.environ)
    if report.status is RunStatus.REFUSED and report.blocked_by is not None:
        log.warning(
            "nightly run skipped run_id=%s blocked_by=%s",
            report.run_id,
            report.blocked_by,
        )
        return
    if report.status in (RunStatus.FAILED, RunStatus.REFUSED):
        raise RunFailedError(f"the run failed: {report.message or report.summary()}")


def on_run_message(body: bytes, *, dequeue_count: int) -> None:
    """Carries out a run queued by ``POST /api/sync``.

    The host delivers a message again when an invocation fails, so this is safe to
    repeat: a run whose report is final is not run again, and one that another
    invocation holds the lock for is left to it. A run ends with its report, never
    with an exception: an exception would make the host run it again.
    """
    from sync_core.run import Mode, RunRequest, execute
    from sync_core.runstore import RunStore
    from sync_core.settings import Settings

    message = _message(body)
    if message is None:
        return
    settings = Settings.from_environ(os.environ)
    with RunStore(settings.storage) as store:
        if _already_handled(store, message.run_id, dequeue_count):
            return

    mode = Mode.PLAN if message.dry_run else Mode.SYNC
    execute(RunRequest(mode=mode, trigger="http", run_id=message.run_id), os.environ)


def on_poison_message(body: bytes) -> None:
    """Ends the report of a run the host gave up on after its retries.

    Without this the run's report would stay queued or running, and a pipeline
    polling it would wait for its own timeout.
    """
    from sync_core.report import RunReport, RunStatus
    from sync_core.runstore import RunStore
    from sync_core.settings import Settings

    message = _message(body)
    if message is None:
        return
    settings = Settings.from_environ(os.environ)
    with RunStore(settings.storage) as store:
        stored = store.load(message.run_id) or {}
        if _is_final(stored):
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        given_up = RunReport(
            run_id=message.run_id,
            mode=str(stored.get("mode") or ("plan" if message.dry_run else "sync")),
            trigger=str(stored.get("trigger") or "http"),
            status=RunStatus.FAILED,
            started_at=str(stored.get("started_at") or now),
            finished_at=now,
            registry=str(stored.get("registry") or settings.login_server),
            counts=_counts(stored.get("counts")),
            entries=(),
            message=(
                "the run was given up after the queue's retries: every attempt "
                "failed or was stopped; see the function's logs"
            ),
        )
        store.save(given_up, latest=False)
    log.error("run given up after the queue's retries run_id=%s", message.run_id)


def _message(body: bytes) -> RunMessage | None:
    """The run a message names; a malformed one is logged and dropped, not retried."""
    try:
        return RunMessage.from_json(body)
    except InvalidRunMessage as error:
        log.error("queue message dropped reason=%s", error)
        return None


def _already_handled(store: RunStore, run_id: str, dequeue_count: int) -> bool:
    stored = store.load(run_id)
    if stored is not None and _is_final(stored):
        log.warning(
            "run already ended; message ignored run_id=%s status=%s dequeue_count=%s",
            run_id,
            stored.get("status"),
            dequeue_count,
        )
        return True
    if store.holder() == run_id:
        log.warning(
            "run is being carried out by another invocation run_id=%s dequeue_count=%s",
            run_id,
            dequeue_count,
        )
        return True
    if dequeue_count > 1:
        # The work is decided by digest, so running again repeats no import.
        log.warning(
            "run delivered again after an interrupted attempt run_id=%s "
            "dequeue_count=%s",
            run_id,
            dequeue_count,
        )
    return False


def _is_final(stored: dict[str, Any]) -> bool:
    from sync_core.report import RunStatus

    try:
        return RunStatus(str(stored.get("status"))).is_final
    except ValueError:
        # A status this version does not know is one it must not run again.
        return bool(stored)


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(action): int(count) for action, count in value.items()}
