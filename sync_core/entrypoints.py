"""What the Function App's triggers call: thin, and free of any trigger type.

The heavy Azure SDKs load on the first run, not when the host indexes the app, so
cold starts stay short.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from sync_core.errors import SyncError

log = logging.getLogger(__name__)

# The Azure SDKs log every request at INFO; a run's own records are what matter.
logging.getLogger("azure").setLevel(logging.WARNING)


class RunFailedError(SyncError):
    """Raised by the timer so that the invocation fails and alerts can see it."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A status code and a JSON body, for the HTTP trigger to send."""

    status_code: int
    body: str


def on_timer(*, past_due: bool) -> None:
    """The nightly run; raises when it failed as a whole."""
    from sync_core.report import RunStatus
    from sync_core.run import Mode, RunRequest, execute

    if past_due:
        log.warning("timer is past due; running now")
    report = execute(RunRequest(mode=Mode.SYNC, trigger="timer"), os.environ)
    if report.status is RunStatus.FAILED:
        raise RunFailedError(f"the run failed: {report.message or report.summary()}")


def on_http_sync(body: bytes) -> HttpAnswer:
    """An on-demand run; ``{"dryRun": true}`` plans without importing."""
    from sync_core.report import RunStatus
    from sync_core.run import Mode, RunRequest, execute

    try:
        options = json.loads(body) if body.strip() else {}
    except ValueError:
        return _error(400, "invalid-json", "the request body must be JSON")
    if not isinstance(options, dict) or set(options) - {"dryRun"}:
        return _error(400, "unknown-field", "the only field allowed is dryRun")
    dry_run = options.get("dryRun", False)
    if not isinstance(dry_run, bool):
        return _error(400, "invalid-field", "dryRun must be true or false")

    mode = Mode.PLAN if dry_run else Mode.SYNC
    report = execute(RunRequest(mode=mode, trigger="http"), os.environ)
    status_code = 500 if report.status is RunStatus.FAILED else 200
    if report.errors:
        status_code = 422
    return HttpAnswer(status_code=status_code, body=report.to_json())


def _error(status_code: int, code: str, message: str) -> HttpAnswer:
    body = json.dumps({"error": {"code": code, "message": message}})
    return HttpAnswer(status_code=status_code, body=body)
