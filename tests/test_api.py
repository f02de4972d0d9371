"""The HTTP API through the app's own functions: real ``func.HttpRequest`` objects,
the real run queue in Azurite, and every answer checked against the OpenAPI document.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from standin.harness import Standin
from sync_core import api
from sync_core.api import MAX_LIST_BYTES, MAX_PLAN_BODY_BYTES, load_openapi
from sync_core.report import RunReport, RunStatus
from sync_core.run import Mode, RunRequest, execute
from sync_core.runqueue import RunMessage, enqueue_run
from sync_core.runstore import RunStore
from sync_core.settings import Settings, StorageSettings
from sync_core.validation import validate
from tests.functions_host import FunctionsHost, decoded, queue_message, run_queue

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = load_openapi()
_REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:openapi", Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)

WEBHOOK = "quay.io/jetstack/cert-manager-webhook:v1.15.2"
CAINJECTOR = "quay.io/jetstack/cert-manager-cainjector:v1.15.2"
HELLOWORLD = "mcr.microsoft.com/azuredocs/aks-helloworld:v1"


# The OpenAPI document, held against every answer below.


def documented(method: str, path: str, response: func.HttpResponse) -> Any:
    """The answer's JSON body, after checking it is what the document promises."""
    body = json.loads(response.get_body())
    template = _document_path(path)
    operation = DOCUMENT["paths"][template].get(method.lower())
    if operation is None:
        assert response.status_code == 405, (method, path, body)
        assert response.headers.get("Allow") in {
            verb.upper() for verb in DOCUMENT["paths"][template]
        }
        pointer = "/components/responses/MethodNotAllowed"
    else:
        status = str(response.status_code)
        assert status in operation["responses"], (method, path, status, body)
        escaped = template.replace("~", "~0").replace("/", "~1")
        pointer = f"/paths/{escaped}/{method.lower()}/responses/{status}"
        declared = operation["responses"][status]
        if "$ref" in declared:
            pointer = declared["$ref"].removeprefix("#")
            declared = _resolve(pointer)
        for header in declared.get("headers", {}):
            if header == "Location":
                assert response.headers.get("Location"), (method, path, status)
    schema = {"$ref": f"urn:openapi#{pointer}/content/application~1json/schema"}
    validator = Draft202012Validator(
        schema,
        registry=_REGISTRY,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(body)
    assert response.mimetype == "application/json"
    return body


def _document_path(path: str) -> str:
    route = "/" + path.partition("?")[0]
    if route in DOCUMENT["paths"]:
        return route
    head, _, _ = route.rpartition("/")
    templated = [p for p in DOCUMENT["paths"] if p.rpartition("/")[0] == head]
    assert templated, route
    return str(next(p for p in templated if "{" in p))


def _resolve(pointer: str) -> dict[str, Any]:
    node: Any = DOCUMENT
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    assert isinstance(node, dict)
    return node


def call(
    host: FunctionsHost,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> tuple[func.HttpResponse, Any]:
    response = host.http(method, path, body=body, headers=headers)
    return response, documented(method, path, response)


# Fixtures.


@dataclass
class App:
    """The app's functions, the stand-in they work against, and the run queue.

    Reports (and so the run lock beside them) and the published list are the
    test's own, so no other test's run or list is seen.
    """

    host: FunctionsHost
    standin: Standin
    environ: Mapping[str, str]
    queue: QueueClient
    monkeypatch: pytest.MonkeyPatch

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[func.HttpResponse, Any]:
        return call(self.host, method, path, body=body, headers=headers)

    def report(self, run_id: str) -> Any:
        response, report = self.call("GET", f"runs/{run_id}")
        assert response.status_code == 200
        return report

    def store(self) -> RunStore:
        return RunStore(Settings.from_environ(self.environ).storage)

    def imports(self) -> int:
        return int(self.standin.control.stats()["arm"]["import"])

    def publish(self, text: str) -> None:
        """Publishes a list where this test's app reads it."""
        blob = "images-" + uuid.uuid4().hex[:8] + ".txt"
        with BlobServiceClient.from_connection_string(
            self.standin.azurite_connection_string
        ) as service:
            container = service.get_container_client(
                self.environ["ACRSYNC_LIST_CONTAINER"]
            )
            if not container.exists():
                container.create_container()
            container.upload_blob(blob, text.encode(), overwrite=True)
        self.monkeypatch.setenv("ACRSYNC_LIST_BLOB", blob)

    def report_ids(self) -> list[str]:
        with BlobServiceClient.from_connection_string(
            self.standin.azurite_connection_string
        ) as service:
            container = service.get_container_client(
                self.environ["ACRSYNC_REPORT_CONTAINER"]
            )
            return [
                blob.name.removeprefix("runs/").removesuffix(".json")
                for blob in container.list_blobs(name_starts_with="runs/")
            ]


@pytest.fixture
def app(clean_standin: Standin, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    settings = clean_standin.app_settings()
    settings["ACRSYNC_REPORT_CONTAINER"] = "reports-" + uuid.uuid4().hex[:12]
    settings["ACRSYNC_LIST_BLOB"] = "images-" + uuid.uuid4().hex[:8] + ".txt"
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    queue = run_queue(clean_standin.azurite_connection_string)
    try:
        yield App(FunctionsHost(), clean_standin, os.environ, queue, monkeypatch)
    finally:
        queue.clear_messages()
        queue.close()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:8]


def path_of(url: str) -> str:
    return url.split("/api/", 1)[1]


# POST /api/sync: a run queued, carried out by the queue function, read back.


def test_field_case_13_post_sync_answers_202_at_once_and_queues_the_run(
    app: App,
) -> None:
    app.standin.control.configure(import_duration_ms=5000)
    started = time.monotonic()

    response, accepted = app.call("POST", "sync", body=b"")

    elapsed = time.monotonic() - started
    run_id = accepted["run_id"]
    assert response.status_code == 202
    assert elapsed < 5
    assert accepted["status"] == "queued"
    assert accepted["status_url"] == f"http://localhost/api/runs/{run_id}"
    assert response.headers["Location"] == accepted["status_url"]
    assert int(response.headers["Retry-After"]) > 0
    [message] = app.queue.receive_messages()
    assert decoded(message.content) == {"run_id": run_id, "dryRun": False}
    assert app.report(run_id)["status"] == "queued"
    assert app.imports() == 0


def test_a_run_started_over_http_is_carried_out_by_the_queue_and_read_back(
    app: App, prefix: str
) -> None:
    app.publish(f"{CAINJECTOR} => {prefix}/cainjector\n")
    _, accepted = app.call("POST", "sync", body=b"{}")

    delivered = app.host.deliver(app.queue)
    _, report = app.call("GET", path_of(accepted["status_url"]))
    _, latest = app.call("GET", "runs/latest")

    assert delivered == 1
    assert report["run_id"] == accepted["run_id"]
    assert report["status"] == "succeeded"
    assert report["counts"]["imported"] == 1
    [entry] = report["entries"]
    upstream = app.standin.public_digest(
        "quay.io", "jetstack/cert-manager-cainjector", "v1.15.2"
    )
    assert entry["target"] == f"{prefix}/cainjector:v1.15.2"
    assert entry["digest"] == upstream
    assert app.standin.acr_digest(f"{prefix}/cainjector", "v1.15.2") == upstream
    assert latest == report


def test_a_dry_run_is_queued_as_a_plan_and_imports_nothing(
    app: App, prefix: str
) -> None:
    app.publish(f"{WEBHOOK} => {prefix}/webhook\n")

    _, accepted = app.call("POST", "sync", body=b'{"dryRun": true}')
    app.host.deliver(app.queue)
    report = app.report(accepted["run_id"])

    assert accepted["mode"] == "plan"
    assert report["mode"] == "plan"
    assert report["status"] == "succeeded"
    assert report["entries"][0]["action"] == "import"
    assert app.imports() == 0


def test_a_sync_while_another_run_holds_the_lock_answers_409_naming_it(
    app: App,
) -> None:
    with app.store() as runs, runs.lock("running-run"):
        response, refused = app.call("POST", "sync")

    assert response.status_code == 409
    assert refused["error"]["code"] == "already-running"
    assert refused["error"]["run_id"] == "running-run"
    assert refused["error"]["status_url"] == "http://localhost/api/runs/running-run"
    assert app.queue.peek_messages() == []


def test_a_dry_run_is_queued_while_a_sync_holds_the_lock(app: App) -> None:
    with app.store() as runs, runs.lock("running-run"):
        response, _ = app.call("POST", "sync", body=b'{"dryRun": true}')

    assert response.status_code == 202


def test_when_two_queued_runs_meet_the_lock_lets_one_work_and_refuses_the_other(
    app: App, prefix: str
) -> None:
    app.publish(f"{HELLOWORLD} => {prefix}/helloworld\n")
    app.standin.control.configure(import_duration_ms=1500)
    first = app.call("POST", "sync")[1]["run_id"]
    second = app.call("POST", "sync")[1]["run_id"]
    messages = list(app.queue.receive_messages(max_messages=2, visibility_timeout=120))
    assert len(messages) == 2
    barrier = threading.Barrier(2)

    def deliver(content: str) -> None:
        message = queue_message(base64.b64decode(content))
        barrier.wait()
        app.host.functions["run_queued"](message)

    threads = [threading.Thread(target=deliver, args=(m.content,)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    reports = {run_id: app.report(run_id) for run_id in (first, second)}
    statuses = sorted(report["status"] for report in reports.values())
    assert statuses == ["refused", "succeeded"]
    [winner] = [rid for rid, r in reports.items() if r["status"] == "succeeded"]
    [loser] = [r for r in reports.values() if r["status"] == "refused"]
    assert loser["blocked_by"] == winner
    assert app.imports() == 1


def test_a_message_for_a_run_that_already_ended_is_not_run_again(
    app: App, prefix: str
) -> None:
    app.publish(f"{WEBHOOK} => {prefix}/webhook\n")
    run_id = app.call("POST", "sync")[1]["run_id"]
    app.host.deliver(app.queue)
    first = app.report(run_id)
    app.standin.control.reset_stats()
    enqueue_run(
        Settings.from_environ(app.environ).storage,
        RunMessage(run_id=run_id, dry_run=False),
        connection="ACRSYNC_STORAGE",
    )

    delivered = app.host.deliver(app.queue)

    assert delivered == 1
    assert app.report(run_id) == first
    assert app.imports() == 0


def test_a_run_delivered_again_after_an_interrupted_attempt_is_finished(
    app: App, prefix: str
) -> None:
    app.publish(f"{WEBHOOK} => {prefix}/webhook\n")
    run_id = uuid.uuid4().hex
    with app.store() as runs:
        runs.save(running(run_id), latest=False)
    body = RunMessage(run_id=run_id, dry_run=False).to_json().encode()

    app.host.functions["run_queued"](queue_message(body, dequeue_count=2))

    report = app.report(run_id)
    assert report["status"] == "succeeded"
    assert report["mode"] == "sync"
    assert report["entries"][0]["action"] == "imported"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not JSON"),
        pytest.param(b'{"run_id": "../x"}', id="a run id that is no blob name"),
        pytest.param(b'{"dryRun": true}', id="no run id"),
    ],
)
def test_a_malformed_message_is_dropped_without_a_retry(body: bytes) -> None:
    host = FunctionsHost()

    result = host.functions["run_queued"](queue_message(body))

    assert result is None


def test_a_run_the_host_gave_up_on_ends_failed_and_a_finished_one_is_left_alone(
    app: App,
) -> None:
    finished = app.call("POST", "sync", body=b'{"dryRun": true}')[1]["run_id"]
    app.host.deliver(app.queue)
    finished_report = app.report(finished)
    given_up = app.call("POST", "sync")[1]["run_id"]

    for run_id in (given_up, finished):
        body = RunMessage(run_id=run_id, dry_run=False).to_json().encode()
        app.host.functions["run_given_up"](queue_message(body, dequeue_count=1))

    report = app.report(given_up)
    assert report["status"] == "failed"
    assert "given up" in report["message"]
    assert report["finished_at"] is not None
    assert app.report(finished) == finished_report


def test_a_run_that_cannot_be_queued_ends_failed_and_answers_503(app: App) -> None:
    from azure.core.exceptions import ServiceRequestError

    def unreachable(*args: object, **kwargs: object) -> None:
        raise ServiceRequestError("the queue service did not answer")

    app.monkeypatch.setattr("sync_core.runqueue.enqueue_run", unreachable)

    response, refused = app.call("POST", "sync")

    assert response.status_code == 503
    assert refused["error"]["code"] == "storage-unavailable"
    [run_id] = app.report_ids()
    assert app.report(run_id)["status"] == "failed"


# POST /api/plan: synchronous, bounded, for the published list or one in the body.


def test_the_plan_shows_import_update_and_unchanged_with_digests(
    app: App, prefix: str
) -> None:
    text = (
        f"{WEBHOOK} => {prefix}/webhook\n"
        f"{CAINJECTOR} => {prefix}/cainjector\n"
        f"{HELLOWORLD} => {prefix}/helloworld\n"
    )
    first_two = "".join(text.splitlines(keepends=True)[:2]).encode()
    execute(RunRequest(mode=Mode.SYNC, trigger="test", list_data=first_two), os.environ)
    before = app.standin.acr_digest(f"{prefix}/cainjector", "v1.15.2")
    moved = app.standin.move_tag(
        "quay.io", "jetstack/cert-manager-cainjector", "v1.15.2"
    )
    app.publish(text)
    app.standin.control.reset_stats()

    response, plan = app.call("POST", "plan")

    assert response.status_code == 200
    assert plan["mode"] == "plan"
    rows = {row["target"].split("/")[1]: row for row in plan["entries"]}
    webhook = app.standin.public_digest(
        "quay.io", "jetstack/cert-manager-webhook", "v1.15.2"
    )
    helloworld = app.standin.public_digest(
        "mcr.microsoft.com", "azuredocs/aks-helloworld", "v1"
    )
    assert rows["webhook:v1.15.2"]["action"] == "unchanged"
    assert rows["webhook:v1.15.2"]["digest"] == webhook
    assert rows["webhook:v1.15.2"]["previous_digest"] == webhook
    assert rows["cainjector:v1.15.2"]["action"] == "update"
    assert rows["cainjector:v1.15.2"]["digest"] == moved
    assert rows["cainjector:v1.15.2"]["previous_digest"] == before
    assert rows["helloworld:v1"]["action"] == "import"
    assert rows["helloworld:v1"]["digest"] == helloworld
    assert rows["helloworld:v1"]["previous_digest"] is None
    assert app.imports() == 0


@pytest.mark.parametrize("as_json", [False, True], ids=["text/plain", "JSON"])
def test_a_list_sent_in_the_body_is_planned_and_the_published_one_is_kept(
    app: App, prefix: str, as_json: bool
) -> None:
    app.publish(f"{WEBHOOK} => {prefix}/published\n")
    proposed = f"{HELLOWORLD} => {prefix}/proposed\n"
    body, media_type = proposed.encode(), "text/plain; charset=utf-8"
    if as_json:
        body, media_type = json.dumps({"list": proposed}).encode(), "application/json"

    response, plan = app.call(
        "POST", "plan", body=body, headers={"Content-Type": media_type}
    )

    assert response.status_code == 200
    assert [row["target"] for row in plan["entries"]] == [f"{prefix}/proposed:v1"]
    assert plan["entries"][0]["action"] == "import"
    published = app.call("POST", "plan")[1]
    assert [row["target"] for row in published["entries"]] == [
        f"{prefix}/published:v1.15.2"
    ]


INVALID_LIST = (
    f"{WEBHOOK} => webhook\n"
    "quay.io/Jetstack/UPPER:v1 => upper\n"
    "docker.io/library/busybox:1.36 => ok # fine\n"
    "ghcr.io/x/y:1 => a b\n"
)


@pytest.mark.parametrize("as_json", [False, True], ids=["text/plain", "JSON"])
def test_an_invalid_list_gets_422_with_the_validators_errors(
    app: App, as_json: bool
) -> None:
    body = INVALID_LIST.encode()
    headers = {"Content-Type": "text/plain"}
    if as_json:
        body = json.dumps({"list": INVALID_LIST}).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}

    response, refused = app.call("POST", "plan", body=body, headers=headers)

    login_server = app.environ["ACRSYNC_LOGIN_SERVER"]
    expected = validate(INVALID_LIST, login_server=login_server)
    assert response.status_code == 422
    assert refused["error"]["code"] == "invalid-image-list"
    assert refused["error"]["errors"] == [asdict(p) for p in expected.errors]
    assert [p["line"] for p in refused["error"]["errors"]] == [2, 4]


def test_a_published_list_that_is_missing_answers_500_plan_failed(app: App) -> None:
    app.monkeypatch.setenv("ACRSYNC_LIST_BLOB", "never-published.txt")

    response, refused = app.call("POST", "plan")

    assert response.status_code == 500
    assert refused["error"]["code"] == "plan-failed"
    assert "never-published.txt" in refused["error"]["message"]


def test_a_plan_still_going_after_the_wait_answers_202_and_ends_in_the_background(
    app: App, prefix: str
) -> None:
    app.standin.control.configure(latency_ms=300)
    app.monkeypatch.setattr(api, "PLAN_WAIT_SECONDS", 0.2)
    proposed = f"{WEBHOOK} => {prefix}/webhook\n".encode()

    response, accepted = app.call(
        "POST", "plan", body=proposed, headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 202
    assert response.headers["Location"] == accepted["status_url"]
    report = final_report(app, path_of(accepted["status_url"]))
    assert report["status"] == "succeeded"
    assert report["entries"][0]["action"] == "import"


def test_the_plan_is_bounded_well_inside_the_front_ends_cut(
    app: App, prefix: str
) -> None:
    seen: list[RunRequest] = []

    def planned(request: RunRequest, environ: Mapping[str, str]) -> Any:
        seen.append(request)
        return execute(request, environ)

    app.monkeypatch.setattr("sync_core.run.execute", planned)
    proposed = f"{WEBHOOK} => {prefix}/webhook\n".encode()

    app.call("POST", "plan", body=proposed, headers={"Content-Type": "text/plain"})

    [request] = seen
    assert request.mode is Mode.PLAN
    assert request.budget_seconds is not None
    assert request.budget_seconds < api.PLAN_WAIT_SECONDS < 230


def final_report(app: App, path: str, seconds: float = 60) -> Any:
    """Polls a report until it is final; ``Retry-After`` comes while it is not."""
    deadline = time.monotonic() + seconds
    while True:
        response, report = app.call("GET", path)
        if RunStatus(report["status"]).is_final:
            assert "Retry-After" not in response.headers
            return report
        assert response.headers["Retry-After"]
        assert time.monotonic() < deadline, report
        time.sleep(0.1)


# GET /api/runs/{run_id}, GET /api/runs/latest.


@pytest.mark.parametrize(
    "run_id",
    [
        pytest.param(uuid.uuid4().hex, id="an id no run has"),
        pytest.param("..%2Fsecrets", id="an id no run can have"),
    ],
)
def test_an_unknown_run_is_404(app: App, run_id: str) -> None:
    response, refused = app.call("GET", f"runs/{run_id}")

    assert response.status_code == 404
    assert refused["error"]["code"] == "run-not-found"


def test_latest_before_any_sync_is_404(app: App) -> None:
    response, refused = app.call("GET", "runs/latest")

    assert response.status_code == 404
    assert refused["error"]["code"] == "no-runs-yet"


def test_storage_that_does_not_answer_is_503_with_retry_after(app: App) -> None:
    # The report store on a port of 127.0.0.1 where nothing listens, asked once:
    # the SDK's own retries would only make the test slow.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = re.sub(
        r"BlobEndpoint=[^;]+",
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1",
        app.environ["ACRSYNC_STORAGE"],
    )

    def once(storage: StorageSettings) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(dead, retry_total=0)

    app.monkeypatch.setattr("sync_core.runstore.blob_service", once)

    response, refused = app.call("GET", f"runs/{uuid.uuid4().hex}")

    assert response.status_code == 503
    assert refused["error"]["code"] == "storage-unavailable"
    assert int(response.headers["Retry-After"]) > 0


# Errors that need no storage: methods, bodies, settings.


ROUTES = {
    "sync": "POST",
    "plan": "POST",
    "runs/0123abcd": "GET",
    "runs/latest": "GET",
    "openapi": "GET",
}
WRONG_METHODS = [
    (path, method)
    for path, allowed in ROUTES.items()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
    if method != allowed
]


@pytest.mark.parametrize(("path", "method"), WRONG_METHODS)
def test_a_wrong_method_is_405_with_allow(path: str, method: str) -> None:
    response, refused = call(FunctionsHost(), method, path)

    assert response.status_code == 405
    assert refused["error"]["code"] == "method-not-allowed"
    assert response.headers["Allow"] == ROUTES[path]


@pytest.mark.parametrize(
    ("path", "body", "media_type", "status", "code"),
    [
        pytest.param(
            "sync", b"{not json", None, 400, "invalid-json", id="sync: not JSON"
        ),
        pytest.param(
            "sync", b"[true]", None, 400, "invalid-json", id="sync: not an object"
        ),
        pytest.param(
            "sync", b"[" * 1000, None, 400, "invalid-json", id="sync: nested too deep"
        ),
        pytest.param(
            "sync",
            b'{"dryrun": true}',
            None,
            400,
            "unknown-field",
            id="sync: field names are case-sensitive",
        ),
        pytest.param(
            "sync",
            b'{"dryRun": "yes"}',
            None,
            400,
            "invalid-field",
            id="sync: dryRun is a boolean",
        ),
        pytest.param(
            "sync",
            b'{"dryRun": false}' + b" " * 2000,
            None,
            413,
            "body-too-large",
            id="sync: body over its limit",
        ),
        pytest.param(
            "plan",
            b'{"list": ',
            "application/json",
            400,
            "invalid-json",
            id="plan: not JSON",
        ),
        pytest.param(
            "plan",
            b'{"list": "", "dryRun": true}',
            "application/json",
            400,
            "unknown-field",
            id="plan: list is the only field",
        ),
        pytest.param(
            "plan",
            b'{"list": ["a => b"]}',
            "application/json",
            400,
            "invalid-field",
            id="plan: list is a string",
        ),
        pytest.param(
            "plan",
            b"list=a",
            "application/x-www-form-urlencoded",
            415,
            "unsupported-media-type",
            id="plan: a form is no list",
        ),
        pytest.param(
            "plan",
            b"#" * (MAX_PLAN_BODY_BYTES + 1),
            "text/plain",
            413,
            "body-too-large",
            id="plan: body over its limit",
        ),
        pytest.param(
            "plan",
            b"#" * (MAX_LIST_BYTES + 1),
            "text/plain",
            413,
            "body-too-large",
            id="plan: list over the list's byte limit",
        ),
        pytest.param(
            "plan",
            json.dumps({"list": "#" * (MAX_LIST_BYTES + 1)}).encode(),
            "application/json",
            413,
            "body-too-large",
            id="plan: JSON list over the list's byte limit",
        ),
    ],
)
def test_a_bad_body_is_refused_with_a_json_error(
    path: str, body: bytes, media_type: str | None, status: int, code: str
) -> None:
    headers = {} if media_type is None else {"Content-Type": media_type}

    response, refused = call(FunctionsHost(), "POST", path, body=body, headers=headers)

    assert response.status_code == status
    assert refused["error"]["code"] == code
    assert refused["error"]["message"]


def settings_without(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    required = {
        "ACRSYNC_SUBSCRIPTION_ID": "sub",
        "ACRSYNC_RESOURCE_GROUP": "rg",
        "ACRSYNC_REGISTRY_NAME": "mirror",
        "ACRSYNC_STORAGE": "UseDevelopmentStorage=true",
    }
    for name, value in required.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "sync"), ("POST", "plan"), ("GET", "runs/latest")]
)
def test_a_missing_setting_is_500_naming_it(
    monkeypatch: pytest.MonkeyPatch, method: str, path: str
) -> None:
    settings_without(monkeypatch, "ACRSYNC_REGISTRY_NAME")

    response, refused = call(FunctionsHost(), method, path)

    assert response.status_code == 500
    assert refused["error"]["code"] == "configuration-error"
    assert refused["error"]["setting"] == "ACRSYNC_REGISTRY_NAME"


def test_an_unexpected_failure_is_still_a_json_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(environ: Mapping[str, str]) -> Settings:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "_settings", broken)

    response, refused = call(FunctionsHost(), "GET", "runs/latest")

    assert response.status_code == 500
    assert refused["error"]["code"] == "internal-error"
    assert "a bug" not in refused["error"]["message"]


# The OpenAPI document and the routes it describes.


def test_the_openapi_document_is_valid() -> None:
    validate_openapi(DOCUMENT)


def test_the_document_describes_exactly_the_apps_routes() -> None:
    host = FunctionsHost()
    routes = {route.template: route for route in host.routes}

    documented_routes = set()
    for path, operations in DOCUMENT["paths"].items():
        route, _ = host.match(path.removeprefix("/"))
        documented_routes.add(route.template)
        assert set(operations) <= {m.lower() for m in route.methods}, path
    assert documented_routes == set(routes)


def test_every_route_needs_a_function_key() -> None:
    host = FunctionsHost()

    levels = {
        binding["authLevel"]
        for declared in host.bindings.values()
        for binding in declared
        if binding["type"] == "httpTrigger"
    }

    assert levels == {"FUNCTION"}
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {"x-functions-key", "code"}


def test_the_document_names_every_error_code_the_api_answers() -> None:
    tree = ast.parse((ROOT / "sync_core" / "api.py").read_text(encoding="utf-8"))

    raised = {
        node.args[1].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "ApiError"
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
    }

    codes = DOCUMENT["components"]["schemas"]["ErrorDetail"]["properties"]["code"]
    assert raised == set(codes["enum"])


def test_the_app_serves_its_openapi_document() -> None:
    response, document = call(FunctionsHost(), "GET", "openapi")

    assert response.status_code == 200
    assert document == DOCUMENT


def test_the_document_ships_with_the_app() -> None:
    ignored = (ROOT / ".funcignore").read_text(encoding="utf-8").split()

    assert (ROOT / "sync_core" / "openapi.json").is_file()
    assert not any(
        pattern.strip("/") in {"sync_core", "sync_core/openapi.json", "*.json"}
        for pattern in ignored
    )


def running(run_id: str) -> RunReport:
    """The report a run leaves when its worker stops in the middle."""
    return RunReport(
        run_id=run_id,
        mode="sync",
        trigger="http",
        status=RunStatus.RUNNING,
        started_at="2026-12-04T02:00:00+00:00",
        finished_at=None,
        registry="mirror.azurecr.io",
        counts={},
        entries=(),
    )


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_the_readme_lists_the_documents_routes_and_error_codes() -> None:
    section = readme_section("HTTP API")

    routes = set(re.findall(r"^\| `(GET|POST) /api(/\S+)`", section, re.MULTILINE))
    codes = set(re.findall(r"`([a-z]+(?:-[a-z]+)+)`", section))

    operations = {
        (method.upper(), path)
        for path, methods in DOCUMENT["paths"].items()
        for method in methods
        if path != "/openapi"
    }
    assert routes == operations
    enum = DOCUMENT["components"]["schemas"]["ErrorDetail"]["properties"]["code"]
    assert set(enum["enum"]) <= codes
