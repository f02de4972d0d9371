"""The app indexes as the Functions host would, and its handlers take real objects."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import types
import uuid
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

from standin.harness import Standin
from sync_core.entrypoints import RunFailedError
from sync_core.runstore import RunStore
from sync_core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
needs_worker = pytest.mark.skipif(
    sys.version_info < (3, 13),
    reason="the Functions worker's own indexer (azure-functions-runtime) needs 3.13",
)


def fresh_app() -> types.ModuleType:
    """function_app imported afresh: the SDK lets an app list its functions once."""
    sys.modules.pop("function_app", None)
    return importlib.import_module("function_app")


@pytest.fixture
def app_module() -> types.ModuleType:
    return fresh_app()


def bindings(module: types.ModuleType) -> dict[str, list[dict[str, Any]]]:
    return {
        f.get_function_name(): [json.loads(raw) for raw in f.get_raw_bindings()]
        for f in module.app.get_functions()
    }


def handler(name: str) -> Any:
    module = fresh_app()
    functions = {f.get_function_name(): f for f in module.app.get_functions()}
    return functions[name].get_user_function()


FUNCTIONS = {
    "nightly_sync",
    "sync_now",
    "run_queued",
    "run_given_up",
    "plan_now",
    "run_report",
    "openapi",
}
EVERY_METHOD = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def test_the_app_has_a_timer_the_http_routes_and_the_run_queues(
    app_module: types.ModuleType,
) -> None:
    indexed = bindings(app_module)

    assert set(indexed) == FUNCTIONS
    timer = indexed["nightly_sync"][0]
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "0 0 2 * * *"
    assert timer["runOnStartup"] is False
    routes = {
        name: declared[0]
        for name, declared in indexed.items()
        if declared[0]["type"] == "httpTrigger"
    }
    assert {name: http["route"] for name, http in routes.items()} == {
        "sync_now": "sync",
        "plan_now": "plan",
        "run_report": "runs/{run_id}",
        "openapi": "openapi",
    }
    for http in routes.values():
        assert http["authLevel"] == "FUNCTION"
        # The core answers a wrong method with a JSON 405, so it must see them all.
        assert set(http["methods"]) == EVERY_METHOD
    queues = {name: indexed[name][0] for name in ("run_queued", "run_given_up")}
    assert {name: q["queueName"] for name, q in queues.items()} == {
        "run_queued": "sync-runs",
        "run_given_up": "sync-runs-poison",
    }
    for queue in queues.values():
        assert queue["type"] == "queueTrigger"
        assert queue["connection"] == "ACRSYNC_STORAGE"


def test_the_queue_triggers_follow_the_storage_connection_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACRSYNC_STORAGE_CONNECTION", "AzureWebJobsStorage")

    module = fresh_app()

    try:
        indexed = bindings(module)
        assert indexed["run_queued"][0]["connection"] == "AzureWebJobsStorage"
        assert indexed["run_given_up"][0]["connection"] == "AzureWebJobsStorage"
    finally:
        monkeypatch.delenv("ACRSYNC_STORAGE_CONNECTION")
        fresh_app()


def test_importing_the_app_loads_no_azure_sdk() -> None:
    # Cold starts index the app; the SDKs load on the first run instead.
    probe = (
        "import sys, function_app; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('azure.core', 'azure.storage', 'azure.identity', "
        "'azure.mgmt')) or m == 'sync_core.run'))"
    )

    completed = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert completed.stdout.strip() == "[]"


def test_the_timer_schedule_comes_from_the_app_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACRSYNC_SCHEDULE", "0 15 3 * * 1-5")

    module = fresh_app()

    try:
        assert bindings(module)["nightly_sync"][0]["schedule"] == "0 15 3 * * 1-5"
    finally:
        monkeypatch.delenv("ACRSYNC_SCHEDULE")
        fresh_app()


def test_a_schedule_that_fires_every_second_stops_the_app_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACRSYNC_SCHEDULE", "* * * * * *")

    try:
        with pytest.raises(Exception, match="ACRSYNC_SCHEDULE"):
            fresh_app()
    finally:
        monkeypatch.delenv("ACRSYNC_SCHEDULE")
        fresh_app()


def _worker_index(path: Path) -> list[Any]:
    """Indexes an app with the Python worker's own loader and function registry."""
    from azure_functions_runtime import functions, loader
    from azure_functions_runtime.bindings import meta

    # The host hands the worker its gRPC message types; indexing only reads the
    # binding directions from them.
    protos = types.SimpleNamespace(
        BindingInfo=types.SimpleNamespace(**{"in": 0, "out": 1, "inout": 2})
    )
    meta.load_binding_registry()
    registry = functions.Registry()
    sys.path.insert(0, str(path.parent))
    sys.modules.pop(path.stem, None)
    try:
        indexed = loader.index_function_app(str(path))
        return [
            registry.add_indexed_function(function=f, protos=protos) for f in indexed
        ]
    finally:
        sys.path.remove(str(path.parent))
        sys.modules.pop(path.stem, None)


@needs_worker
def test_the_worker_indexer_accepts_the_app() -> None:
    infos = {info.name: info for info in _worker_index(ROOT / "function_app.py")}

    assert set(infos) == FUNCTIONS
    assert set(infos["nightly_sync"].input_types) == {"timer"}
    assert set(infos["run_queued"].input_types) == {"message"}
    assert set(infos["run_given_up"].input_types) == {"message"}
    for name in ("sync_now", "plan_now", "run_report", "openapi"):
        assert set(infos[name].input_types) == {"req"}
        assert infos[name].return_type is not None


@needs_worker
def test_the_worker_indexer_refuses_an_arg_name_the_handler_lacks(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken_app.py"
    broken.write_text(
        textwrap.dedent(
            """
            import azure.functions as func

            app = func.FunctionApp()

            @app.timer_trigger(schedule="0 0 2 * * *", arg_name="timer")
            def nightly(tick: func.TimerRequest) -> None:
                pass
            """
        )
    )

    from azure_functions_runtime.functions import FunctionLoadError

    with pytest.raises(FunctionLoadError, match="tick"):
        _worker_index(broken)


def test_the_http_handler_refuses_a_body_that_is_not_json() -> None:
    request = func.HttpRequest(
        method="POST", url="/api/sync", body=b"{not json", headers={}
    )

    response = handler("sync_now")(request)

    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == "invalid-json"


def test_the_http_handler_refuses_unknown_fields() -> None:
    request = func.HttpRequest(
        method="POST", url="/api/sync", body=b'{"dryrun": true}', headers={}
    )

    response = handler("sync_now")(request)

    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == "unknown-field"


def settings_without(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    """Every required setting present but one."""
    required = {
        "ACRSYNC_SUBSCRIPTION_ID": "sub",
        "ACRSYNC_RESOURCE_GROUP": "rg",
        "ACRSYNC_REGISTRY_NAME": "mirror",
        "ACRSYNC_STORAGE": "UseDevelopmentStorage=true",
    }
    for name, value in required.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)


def test_a_timer_run_without_settings_fails_and_names_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings_without(monkeypatch, "ACRSYNC_SUBSCRIPTION_ID")

    with pytest.raises(RunFailedError, match="ACRSYNC_SUBSCRIPTION_ID"):
        handler("nightly_sync")(TimerRequest(past_due=False))


def test_an_http_run_without_settings_answers_500_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings_without(monkeypatch, "ACRSYNC_SUBSCRIPTION_ID")
    request = func.HttpRequest(method="POST", url="/api/sync", body=b"", headers={})

    response = handler("sync_now")(request)
    error = json.loads(response.get_body())["error"]

    assert response.status_code == 500
    assert error["code"] == "configuration-error"
    assert "ACRSYNC_SUBSCRIPTION_ID" in error["message"]


@pytest.fixture
def app_env(clean_standin: Standin, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The app pointed at the stand-in, with a report container (and lock) and a
    published list of the test's own."""
    settings = clean_standin.app_settings()
    settings["ACRSYNC_REPORT_CONTAINER"] = "reports-" + uuid.uuid4().hex[:12]
    settings["ACRSYNC_LIST_BLOB"] = "images-" + uuid.uuid4().hex[:8] + ".txt"
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return Settings.from_environ(settings)


def publish(settings: Settings, text: str) -> None:
    storage = settings.storage
    assert storage.connection_string is not None
    with BlobServiceClient.from_connection_string(storage.connection_string) as service:
        container = service.get_container_client(storage.container)
        if not container.exists():
            container.create_container()
        container.upload_blob(storage.blob, text.encode(), overwrite=True)


def test_a_timer_that_finds_a_run_going_ends_quietly(
    app_env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    publish(app_env, "")

    with RunStore(app_env.storage) as store, store.lock("running-run"):
        handler("nightly_sync")(TimerRequest(past_due=False))

    assert "blocked_by=running-run" in caplog.text


def test_a_timer_run_on_an_invalid_list_fails_the_invocation(
    app_env: Settings,
) -> None:
    publish(app_env, "quay.io/Jetstack/UPPER:v1 => upper\n")

    with pytest.raises(RunFailedError, match="line 1"):
        handler("nightly_sync")(TimerRequest(past_due=False))
