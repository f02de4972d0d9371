"""The HTTP API pipelines call: start a run, preview a plan, read a report.

Each public function takes the request as plain values (method, URL, headers, body,
route values) and returns an ``Answer``; ``function_app`` only wires the triggers to
them. ``sync_core/openapi.json`` documents the routes, and the tests hold the two
together.

- ``POST /api/sync`` queues a run (see ``sync_core.runqueue``) and answers 202 with
  its id and status URL; 409 names the run that holds the lock.
- ``POST /api/plan`` answers with the plan for the published list, or for a list in
  the body (``text/plain``, or JSON ``{"list": "..."}``), within ``PLAN_WAIT_SECONDS``.
- ``GET /api/runs/{run_id}`` and ``GET /api/runs/latest`` give a stored report.
- ``GET /api/openapi`` gives the OpenAPI document.

Every error body is ``{"error": {"code": ..., "message": ..., ...}}``. The handlers
see every method and answer a wrong one with 405 themselves, so that error is JSON
too.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from sync_core.errors import ConfigurationError
from sync_core.imagelist import DEFAULT_LIMITS
from sync_core.runqueue import RUN_ID, RunMessage, connection_name

if TYPE_CHECKING:
    from sync_core.report import RunReport
    from sync_core.run import RunRequest
    from sync_core.settings import Settings

log = logging.getLogger(__name__)

# The list's own byte limit, plus room for JSON escapes; the list itself is held to
# the limit once decoded.
MAX_LIST_BYTES: Final = DEFAULT_LIMITS.max_bytes
MAX_PLAN_BODY_BYTES: Final = MAX_LIST_BYTES + 256 * 1024
MAX_SYNC_BODY_BYTES: Final = 1024

# The App Service front end cuts an HTTP request at about 230 seconds while the work
# goes on (MicrosoftDocs/azure-docs#94418). A plan gets a budget well inside that,
# and the answer never waits past PLAN_WAIT_SECONDS: a plan still going by then is
# answered 202 and finishes in the background, its report at its status URL.
PLAN_BUDGET_SECONDS: Final = 120.0
PLAN_WAIT_SECONDS: Final = 180.0

# How long a poller should wait before asking again about a run still going.
RETRY_AFTER_SECONDS: Final = 5
STORAGE_RETRY_AFTER_SECONDS: Final = 30

LATEST: Final = "latest"
JSON: Final = "application/json"
_TEXT_TYPES: Final = frozenset({"", "text/plain", "application/octet-stream"})


@dataclass(frozen=True, slots=True)
class Answer:
    """A status code, a JSON body and headers, for the HTTP trigger to send."""

    status_code: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)
    media_type: str = JSON


class ApiError(Exception):
    """A request the API refuses, with the status code and error code to say so."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details

    def answer(self) -> Answer:
        error = {"code": self.code, "message": self.message, **self.details}
        return _json_answer(self.status_code, {"error": error}, self.headers)


def start_sync(
    method: str,
    url: str,
    body: bytes,
    environ: Mapping[str, str],
) -> Answer:
    """``POST /api/sync``: queue a run; ``{"dryRun": true}`` queues a plan."""
    return _answering(lambda: _start_sync(method, url, body, environ))


def preview_plan(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    environ: Mapping[str, str],
    *,
    wait_seconds: float | None = None,
) -> Answer:
    """``POST /api/plan``: what a sync would do with the published or the sent list."""
    wait = PLAN_WAIT_SECONDS if wait_seconds is None else wait_seconds
    return _answering(
        lambda: _preview_plan(method, url, headers, body, environ, wait_seconds=wait)
    )


def run_report(method: str, run_id: str, environ: Mapping[str, str]) -> Answer:
    """``GET /api/runs/{run_id}``, ``GET /api/runs/latest``: a run's report."""
    return _answering(lambda: _run_report(method, run_id, environ))


def openapi_document(method: str) -> Answer:
    """``GET /api/openapi``: the OpenAPI document of these routes."""
    return _answering(lambda: _openapi_document(method))


def load_openapi() -> dict[str, Any]:
    """The OpenAPI document shipped in this package."""
    text = resources.files("sync_core").joinpath("openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _start_sync(
    method: str, url: str, body: bytes, environ: Mapping[str, str]
) -> Answer:
    from sync_core.report import RunStatus
    from sync_core.runqueue import enqueue_run
    from sync_core.runstore import RunStore

    _require_method(method, "POST")
    options = _json_object(body, MAX_SYNC_BODY_BYTES, allowed=("dryRun",))
    dry_run = options.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise ApiError(400, "invalid-field", "dryRun must be true or false")
    settings = _settings(environ)
    run_id = uuid.uuid4().hex

    with RunStore(settings.storage) as store:
        # A dry run changes nothing and takes no lock, so a running sync is no bar.
        holder = None if dry_run else store.holder()
        if holder is not None:
            raise ApiError(
                409,
                "already-running",
                f"only one sync at a time: run {holder} is already running",
                run_id=holder,
                status_url=_status_url(url, holder),
            )
        store.save(_announced(run_id, dry_run, settings), latest=False)
        try:
            enqueue_run(
                settings.storage,
                RunMessage(run_id=run_id, dry_run=dry_run),
                connection=connection_name(environ),
            )
        except Exception as error:
            # Nothing will carry the run out, so its report must not stay queued.
            failure = f"the run could not be queued: {error}"
            store.save(_announced(run_id, dry_run, settings, failure), latest=False)
            raise

    log.info("run queued run_id=%s dry_run=%s", run_id, dry_run)
    status_url = _status_url(url, run_id)
    accepted = {
        "run_id": run_id,
        "mode": "plan" if dry_run else "sync",
        "status": RunStatus.QUEUED.value,
        "status_url": status_url,
    }
    headers = {"Location": status_url, "Retry-After": str(RETRY_AFTER_SECONDS)}
    return _json_answer(202, accepted, headers)


def _preview_plan(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    environ: Mapping[str, str],
    *,
    wait_seconds: float,
) -> Answer:
    from sync_core.report import RunStatus
    from sync_core.run import Mode, RunRequest

    _require_method(method, "POST")
    list_data = _list_from_body(headers, body)
    _settings(environ)
    run_id = uuid.uuid4().hex
    request = RunRequest(
        mode=Mode.PLAN,
        trigger="http",
        list_data=list_data,
        run_id=run_id,
        budget_seconds=PLAN_BUDGET_SECONDS,
    )

    report = _execute_within(wait_seconds, request, environ)
    if report is None:
        status_url = _status_url(url, run_id)
        still_running = {
            "run_id": run_id,
            "mode": "plan",
            "status": RunStatus.RUNNING.value,
            "status_url": status_url,
        }
        headers = {"Location": status_url, "Retry-After": str(RETRY_AFTER_SECONDS)}
        return _json_answer(202, still_running, headers)
    if report.errors:
        raise ApiError(
            422,
            "invalid-image-list",
            report.message or "the image list is invalid",
            run_id=run_id,
            errors=[asdict(problem) for problem in report.errors],
            warnings=[asdict(problem) for problem in report.warnings],
        )
    if not report.entries and report.status is not RunStatus.SUCCEEDED:
        raise ApiError(
            500,
            "plan-failed",
            report.message or f"the plan {report.status.value}",
            run_id=run_id,
        )
    return Answer(200, report.to_json(), _NO_STORE)


def _run_report(method: str, run_id: str, environ: Mapping[str, str]) -> Answer:
    from sync_core.report import RunStatus
    from sync_core.runstore import RunStore

    _require_method(method, "GET")
    if run_id != LATEST and not RUN_ID.fullmatch(run_id):
        raise _no_such_run(run_id)
    settings = _settings(environ)

    with RunStore(settings.storage) as store:
        report = store.latest() if run_id == LATEST else store.load(run_id)
    if report is None and run_id == LATEST:
        raise ApiError(404, "no-runs-yet", "no sync has finished yet")
    if report is None:
        raise _no_such_run(run_id)

    headers = dict(_NO_STORE)
    if str(report.get("status")) in (RunStatus.QUEUED, RunStatus.RUNNING):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return Answer(200, json.dumps(report, indent=2), headers)


def _openapi_document(method: str) -> Answer:
    _require_method(method, "GET")
    return _json_answer(200, load_openapi(), {})


def _answering(handle: Callable[[], Answer]) -> Answer:
    """Runs a handler; every way it can fail becomes a JSON error answer."""
    from azure.core.exceptions import AzureError

    try:
        return handle()
    except ApiError as error:
        return error.answer()
    except ConfigurationError as error:
        log.error("request refused: the app is misconfigured reason=%s", error)
        return ApiError(
            500, "configuration-error", str(error), setting=error.setting
        ).answer()
    except AzureError as error:
        log.error("request failed: storage unavailable reason=%s", error.message)
        return ApiError(
            503,
            "storage-unavailable",
            f"the app's storage did not answer: {error.message}",
            headers={"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)},
        ).answer()
    except Exception:
        # Every error body is JSON, a bug's included; the log keeps the traceback.
        log.exception("request failed with an unexpected error")
        return ApiError(
            500, "internal-error", "the app failed unexpectedly; see its logs"
        ).answer()


def _require_method(method: str, allowed: str) -> None:
    if method.upper() != allowed:
        raise ApiError(
            405,
            "method-not-allowed",
            f"this route answers {allowed} only, not {method.upper()}",
            headers={"Allow": allowed},
        )


def _json_object(
    body: bytes, max_bytes: int, *, allowed: tuple[str, ...]
) -> dict[str, Any]:
    """The body as a JSON object holding only ``allowed`` fields; empty is ``{}``."""
    if len(body) > max_bytes:
        raise _too_large(max_bytes, len(body))
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ApiError(
            400, "invalid-json", f"the request body must be JSON: {error}"
        ) from error
    if not isinstance(document, dict):
        raise ApiError(400, "invalid-json", "the request body must be a JSON object")
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise ApiError(
            400,
            "unknown-field",
            f"the fields allowed are {', '.join(allowed)}; "
            f"unknown: {', '.join(unknown)}",
        )
    return document


def _list_from_body(headers: Mapping[str, str], body: bytes) -> bytes | None:
    """The list a plan request sends, or None for the published list."""
    if len(body) > MAX_PLAN_BODY_BYTES:
        raise _too_large(MAX_PLAN_BODY_BYTES, len(body))
    media_type = _media_type(headers)
    if media_type == JSON or media_type.endswith("+json"):
        document = _json_object(body, MAX_PLAN_BODY_BYTES, allowed=("list",))
        if "list" not in document:
            return None
        text = document["list"]
        if not isinstance(text, str):
            raise ApiError(
                400, "invalid-field", "list must be a string: the image list's text"
            )
        data = text.encode("utf-8", "surrogatepass")
    elif media_type in _TEXT_TYPES:
        if not body.strip():
            return None
        data = body
    else:
        raise ApiError(
            415,
            "unsupported-media-type",
            f"send the list as text/plain or as application/json "
            f'{{"list": "..."}}, not {media_type}',
        )
    if len(data) > MAX_LIST_BYTES:
        raise _too_large(MAX_LIST_BYTES, len(data), what="the image list")
    return data


def _too_large(limit: int, size: int, what: str = "the request body") -> ApiError:
    return ApiError(
        413, "body-too-large", f"{what} may hold at most {limit} bytes, got {size}"
    )


def _media_type(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.partition(";")[0].strip().lower()
    return ""


def _settings(environ: Mapping[str, str]) -> Settings:
    from sync_core.settings import Settings

    return Settings.from_environ(environ)


def _execute_within(
    seconds: float, request: RunRequest, environ: Mapping[str, str]
) -> RunReport | None:
    """The run's report, or None when it is still going after ``seconds``.

    A run still going finishes in the background and stores its report as usual.
    """
    from concurrent.futures import ThreadPoolExecutor

    from sync_core.run import execute

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan")
    try:
        future = pool.submit(execute, request, environ)
    finally:
        pool.shutdown(wait=False)
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        log.warning(
            "plan still running after %s s; answered 202 run_id=%s",
            seconds,
            request.run_id,
        )
        return None


def _announced(
    run_id: str, dry_run: bool, settings: Settings, failure: str | None = None
) -> RunReport:
    """A queued run's report until the queue function starts it, or its failure."""
    from sync_core.report import PLAN_ACTIONS, SYNC_ACTIONS, RunReport, RunStatus

    now = datetime.now(UTC).isoformat(timespec="seconds")
    return RunReport(
        run_id=run_id,
        mode="plan" if dry_run else "sync",
        trigger="http",
        status=RunStatus.QUEUED if failure is None else RunStatus.FAILED,
        started_at=now,
        finished_at=None if failure is None else now,
        registry=settings.login_server,
        counts=dict.fromkeys(PLAN_ACTIONS if dry_run else SYNC_ACTIONS, 0),
        entries=(),
        message=failure,
    )


def _status_url(request_url: str, run_id: str) -> str:
    """``.../runs/<run_id>`` beside the requested route, without its query."""
    parts = urlsplit(request_url)
    base = parts.path.rstrip("/").rpartition("/")[0]
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/runs/{run_id}", "", ""))


def _no_such_run(run_id: str) -> ApiError:
    return ApiError(404, "run-not-found", f"no run has the id {run_id!r}")


def _json_answer(
    status_code: int, document: Mapping[str, Any], headers: Mapping[str, str]
) -> Answer:
    return Answer(status_code, json.dumps(document, indent=2), {**_NO_STORE, **headers})


# Reports change while a run goes on; no cache between the poller and the app may
# keep an old one.
_NO_STORE: Final[Mapping[str, str]] = {"Cache-Control": "no-store"}
