"""Settings are read once, typed, and every error names its setting."""

from __future__ import annotations

from typing import Any

import pytest

from sync_core.errors import ConfigurationError
from sync_core.settings import DEFAULT_SCHEDULE, Settings, timer_schedule

MINIMAL = {
    "ACRSYNC_SUBSCRIPTION_ID": "sub",
    "ACRSYNC_RESOURCE_GROUP": "rg",
    "ACRSYNC_REGISTRY_NAME": "mirror",
    "ACRSYNC_STORAGE": "UseDevelopmentStorage=true",
}


def test_minimal_settings_take_azure_defaults() -> None:
    settings = Settings.from_environ(MINIMAL)

    assert settings.login_server == "mirror.azurecr.io"
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.acr_audience == "https://containerregistry.azure.net"
    assert settings.registry_endpoint("docker.io") == "https://registry-1.docker.io"
    assert settings.registry_endpoint("quay.io") == "https://quay.io"
    assert settings.storage.container == "image-lists"
    assert settings.storage.blob == "images.txt"
    assert settings.dockerhub is None
    assert settings.max_concurrency == 8


@pytest.mark.parametrize(
    "missing",
    ["ACRSYNC_SUBSCRIPTION_ID", "ACRSYNC_RESOURCE_GROUP", "ACRSYNC_REGISTRY_NAME"],
)
def test_a_missing_required_setting_is_named(missing: str) -> None:
    environ = {k: v for k, v in MINIMAL.items() if k != missing}

    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environ(environ)

    assert raised.value.setting == missing
    assert missing in str(raised.value)


def test_a_missing_storage_connection_names_both_ways_to_set_it() -> None:
    environ = {k: v for k, v in MINIMAL.items() if k != "ACRSYNC_STORAGE"}

    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environ(environ)

    assert raised.value.setting == "ACRSYNC_STORAGE"
    assert "ACRSYNC_STORAGE__blobServiceUri" in str(raised.value)


def test_an_identity_based_storage_connection_is_read_the_functions_way() -> None:
    environ = {k: v for k, v in MINIMAL.items() if k != "ACRSYNC_STORAGE"}
    environ |= {
        "ACRSYNC_STORAGE__blobServiceUri": "https://lists.blob.core.windows.net",
        "ACRSYNC_STORAGE__credential": "managedidentity",
        "ACRSYNC_STORAGE__clientId": "client-1",
    }

    storage = Settings.from_environ(environ).storage

    assert storage.connection_string is None
    assert storage.blob_service_uri == "https://lists.blob.core.windows.net"
    assert storage.client_id == "client-1"


def test_an_identity_based_connection_accepts_only_managed_identity() -> None:
    environ = {k: v for k, v in MINIMAL.items() if k != "ACRSYNC_STORAGE"}
    environ |= {
        "ACRSYNC_STORAGE__blobServiceUri": "https://lists.blob.core.windows.net",
        "ACRSYNC_STORAGE__credential": "connectionstring",
    }

    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environ(environ)

    assert raised.value.setting == "ACRSYNC_STORAGE__credential"
    assert "'managedidentity'" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("ACRSYNC_MAX_CONCURRENCY", "0", "whole number from 1 to 64"),
        ("ACRSYNC_MAX_CONCURRENCY", "many", "whole number from 1 to 64"),
        ("ACRSYNC_IMPORT_TIMEOUT_SECONDS", "-5", "positive number of seconds"),
        ("ACRSYNC_ARM_ENDPOINT", "management.azure.com", "absolute http(s) URL"),
        ("ACRSYNC_REGISTRY_ENDPOINTS", "docker.io", "REGISTRY=URL pairs"),
        ("ACRSYNC_REGISTRY_ENDPOINTS", "quay.io=ftp://mirror", "REGISTRY=URL pairs"),
    ],
)
def test_a_malformed_value_names_the_setting_and_the_rule(
    name: str, value: str, rule: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environ(MINIMAL | {name: value})

    assert raised.value.setting == name
    assert rule in str(raised.value)
    assert value in str(raised.value)


def test_registry_endpoints_point_hosts_at_mirrors() -> None:
    environ = MINIMAL | {
        "ACRSYNC_REGISTRY_ENDPOINTS": (
            "docker.io=https://mirror.example/, Quay.io=https://quay-mirror.example"
        )
    }

    settings = Settings.from_environ(environ)

    assert settings.registry_endpoint("docker.io") == "https://mirror.example"
    assert settings.registry_endpoint("quay.io") == "https://quay-mirror.example"
    assert settings.registry_endpoint("ghcr.io") == "https://ghcr.io"


def test_docker_hub_credentials_need_both_halves_and_hide_the_token() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environ(MINIMAL | {"ACRSYNC_DOCKERHUB_USERNAME": "someone"})

    assert raised.value.setting == "ACRSYNC_DOCKERHUB_TOKEN"

    settings = Settings.from_environ(
        MINIMAL
        | {"ACRSYNC_DOCKERHUB_USERNAME": "someone", "ACRSYNC_DOCKERHUB_TOKEN": "t0ken"}
    )

    assert settings.dockerhub is not None
    assert "t0ken" not in repr(settings)


def test_the_timer_runs_nightly_unless_a_schedule_is_set() -> None:
    assert timer_schedule({}) == DEFAULT_SCHEDULE
    assert timer_schedule({"ACRSYNC_SCHEDULE": "0 30 1 * * *"}) == "0 30 1 * * *"


@pytest.mark.parametrize(
    ("schedule", "rule"),
    [
        ("* 0 2 * * *", "seconds field must be a single number"),
        ("*/5 * * * * *", "seconds field must be a single number"),
        ("0 2 * * *", "six-field NCRONTAB"),
        ("0 0 2 * * * *", "six-field NCRONTAB"),
    ],
)
def test_a_schedule_that_would_misfire_is_refused(schedule: str, rule: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        timer_schedule({"ACRSYNC_SCHEDULE": schedule})

    assert raised.value.setting == "ACRSYNC_SCHEDULE"
    assert rule in str(raised.value)


def test_the_default_run_budget_leaves_a_minute_of_the_function_timeout() -> None:
    """Derived from host.json, so a run reports before the host stops it."""
    import json
    from pathlib import Path

    host = json.loads((Path(__file__).parent.parent / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    timeout = hours * 3600 + minutes * 60 + seconds

    assert timeout <= 600, "the Consumption plan allows at most 10 minutes"
    assert Settings.from_environ(MINIMAL).run_budget_seconds == timeout - 60


class RecordingEnviron(dict[str, str]):
    """An environment that remembers every name the settings reader asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def test_every_setting_is_in_the_sample_settings_and_the_readme() -> None:
    import json
    from pathlib import Path

    root = Path(__file__).parent.parent
    environ = RecordingEnviron(MINIMAL)
    Settings.from_environ(environ)
    timer_schedule(environ)
    sample = json.loads((root / "local.settings.sample.json").read_text())["Values"]
    readme = (root / "README.md").read_text()

    assert environ.asked >= {"ACRSYNC_SCHEDULE", "ACRSYNC_STORAGE__clientId"}
    assert sorted(environ.asked - set(sample)) == []
    assert sorted(name for name in environ.asked if f"`{name}`" not in readme) == []
