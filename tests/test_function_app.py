"""The app indexes as the Functions host would, and its handlers take real objects."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from sync_core.entrypoints import RunFailedError

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


def test_the_app_has_a_timer_and_an_http_function(
    app_module: types.ModuleType,
) -> None:
    indexed = bindings(app_module)

    assert set(indexed) == {"nightly_sync", "sync_now"}
    timer = indexed["nightly_sync"][0]
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "0 0 2 * * *"
    assert timer["runOnStartup"] is False
    http = indexed["sync_now"][0]
    assert http["type"] == "httpTrigger"
    assert http["route"] == "sync"
    assert http["methods"] == ["POST"]
    assert http["authLevel"] == "FUNCTION"


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

    assert set(infos) == {"nightly_sync", "sync_now"}
    assert set(infos["nightly_sync"].input_types) == {"timer"}
    assert set(infos["sync_now"].input_types) == {"req"}
    assert infos["sync_now"].return_type is not None


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


def test_an_http_run_without_settings_answers_500_with_the_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings_without(monkeypatch, "ACRSYNC_SUBSCRIPTION_ID")
    request = func.HttpRequest(method="POST", url="/api/sync", body=b"", headers={})

    response = handler("sync_now")(request)
    report = json.loads(response.get_body())

    assert response.status_code == 500
    assert report["status"] == "failed"
    assert "ACRSYNC_SUBSCRIPTION_ID" in report["message"]
