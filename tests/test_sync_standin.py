"""Whole runs against the local stand-in, through the real Azure SDK clients.

Each test writes to its own target repositories, so tests sharing the session's
stand-in never see each other's imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from standin.harness import EXAMPLE_IMAGE_LIST, Standin
from sync_core.imagelist import parse_image_list
from sync_core.report import RunReport, RunStatus
from sync_core.run import Mode, RunRequest, execute
from sync_core.runstore import RunStore
from sync_core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def example_list(prefix: str) -> str:
    """The example list with every target moved under a prefix of the test's own."""
    lines = []
    for entry in parse_image_list(EXAMPLE_IMAGE_LIST.read_bytes()).entries:
        lines.append(f"{entry.source} => {prefix}/{entry.target.repository}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def app_env(
    clean_standin: Standin, monkeypatch: pytest.MonkeyPatch
) -> Mapping[str, str]:
    """The process environment pointing the app at the stand-in."""
    for name, value in clean_standin.app_settings().items():
        monkeypatch.setenv(name, value)
    return os.environ


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:8]


def run(mode: Mode, text: str, environ: Mapping[str, str]) -> RunReport:
    return execute(
        RunRequest(mode=mode, trigger="test", list_data=text.encode()), environ
    )


def public_manifest_gets(stats: Mapping[str, Any]) -> int:
    return sum(int(c.get("manifest_get", 0)) for c in stats["public"].values())


def test_a_first_sync_imports_every_image_with_the_upstream_digest(
    clean_standin: Standin, app_env: Mapping[str, str], prefix: str
) -> None:
    text = example_list(prefix)

    report = run(Mode.SYNC, text, app_env)

    assert report.status is RunStatus.SUCCEEDED
    assert report.counts == {
        "imported": 7,
        "updated": 0,
        "unchanged": 0,
        "deferred": 0,
        "failed": 0,
    }
    for row, entry in zip(report.entries, parse_image_list(text).entries, strict=True):
        source = entry.source
        upstream = clean_standin.public_digest(
            source.registry, source.repository, source.tag or "latest"
        )
        landed = clean_standin.acr_digest(
            entry.target.repository, entry.target.tag or ""
        )
        assert row.digest == upstream == landed
        assert row.duration_seconds >= 0


def test_a_second_sync_changes_nothing_and_pulls_nothing_upstream(
    clean_standin: Standin, app_env: Mapping[str, str], prefix: str
) -> None:
    text = example_list(prefix)
    run(Mode.SYNC, text, app_env)
    clean_standin.control.reset_stats()

    report = run(Mode.SYNC, text, app_env)

    stats = clean_standin.control.stats()
    assert report.counts["unchanged"] == 7
    assert public_manifest_gets(stats) == 0
    assert stats["arm"]["import"] == 0


def test_a_moved_upstream_tag_updates_exactly_that_image(
    clean_standin: Standin, app_env: Mapping[str, str], prefix: str
) -> None:
    text = example_list(prefix)
    run(Mode.SYNC, text, app_env)
    new_digest = clean_standin.move_tag(
        "registry.k8s.io", "ingress-nginx/kube-webhook-certgen", "v1.4.1"
    )

    report = run(Mode.SYNC, text, app_env)

    updated = [row for row in report.entries if row.action == "updated"]
    assert report.counts == {
        "imported": 0,
        "updated": 1,
        "unchanged": 6,
        "deferred": 0,
        "failed": 0,
    }
    assert [row.target for row in updated] == [
        f"{prefix}/ingress-nginx/kube-webhook-certgen:v1.4.1"
    ]
    assert updated[0].digest == new_digest
    assert updated[0].previous_digest != new_digest
    landed = clean_standin.acr_digest(
        f"{prefix}/ingress-nginx/kube-webhook-certgen", "v1.4.1"
    )
    assert landed == new_digest


def test_a_multi_arch_image_is_compared_and_imported_at_the_index(
    clean_standin: Standin, app_env: Mapping[str, str], prefix: str
) -> None:
    text = f"registry.k8s.io/ingress-nginx/controller:v1.11.1 => {prefix}/controller\n"

    report = run(Mode.SYNC, text, app_env)

    upstream = clean_standin.public_digest(
        "registry.k8s.io", "ingress-nginx/controller", "v1.11.1"
    )
    assert report.entries[0].action == "imported"
    assert report.entries[0].digest == upstream
    assert clean_standin.acr_digest(f"{prefix}/controller", "v1.11.1") == upstream


def test_a_plan_reports_the_changes_and_imports_nothing(
    clean_standin: Standin, app_env: Mapping[str, str], prefix: str
) -> None:
    text = example_list(prefix)

    report = run(Mode.PLAN, text, app_env)

    assert report.counts == {
        "import": 7,
        "update": 0,
        "unchanged": 0,
        "deferred": 0,
        "failed": 0,
    }
    assert clean_standin.control.stats()["arm"]["import"] == 0
    assert (
        clean_standin.acr_digest(f"{prefix}/jetstack/cert-manager-webhook", "v1.15.2")
        is None
    )


def test_an_invalid_list_imports_nothing_and_the_report_says_why(
    clean_standin: Standin, app_env: Mapping[str, str], prefix: str
) -> None:
    text = example_list(prefix) + "quay.io/Jetstack/UPPER:v1 => upper\n"

    report = run(Mode.SYNC, text, app_env)

    assert report.status is RunStatus.REFUSED
    assert report.entries == ()
    assert [problem.line for problem in report.errors] == [8]
    assert clean_standin.control.stats()["arm"]["import"] == 0


def test_field_case_2_a_missing_repository_is_not_found_or_private_and_others_import(
    clean_standin: Standin, app_env: Mapping[str, str], prefix: str
) -> None:
    text = (
        f"quay.io/jetstack/cert-manager-webhook:v1.15.2 => {prefix}/webhook\n"
        f"quay.io/jetstack/cert-manager-webhook:v0.0.0-missing => {prefix}/missing\n"
        f"docker.io/library/no-such-image:1 => {prefix}/nothing\n"
    )

    report = run(Mode.SYNC, text, app_env)

    assert report.status is RunStatus.PARTIAL
    assert [row.action for row in report.entries] == ["imported", "failed", "failed"]
    assert "no such tag or digest" in (report.entries[1].reason or "")
    assert report.entries[1].reason_code == "not-found"
    assert "does not exist or is private" in (report.entries[2].reason or "")
    assert report.entries[2].reason_code == "not-found-or-private"
    assert report.entries[2].reach == "permanent"


def test_field_case_6_docker_hub_credentials_go_with_docker_hub_imports_only(
    clean_standin: Standin, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    settings = clean_standin.app_settings(with_dockerhub_credentials=True)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    clean_standin.move_tag("docker.io", "library/redis", "7")
    text = example_list(prefix) + f"redis:7 => {prefix}/redis\n"

    report = run(Mode.SYNC, text, os.environ)

    assert report.status is RunStatus.SUCCEEDED
    imports = clean_standin.control.stats()["imports"]
    docker_hub = [item for item in imports if item["source"] == "docker.io"]
    others = [item for item in imports if item["source"] != "docker.io"]
    assert len(docker_hub) == 2
    assert all(item["credentials"] for item in docker_hub)
    assert len(others) == 6
    assert not any(item["credentials"] for item in others)
    assert settings["ACRSYNC_DOCKERHUB_TOKEN"] not in report.to_json()


def test_the_run_reads_the_published_list_and_stores_its_report(
    clean_standin: Standin, app_env: Mapping[str, str], prefix: str
) -> None:
    clean_standin.upload_image_list(
        f"mcr.microsoft.com/azuredocs/aks-helloworld:v1 => {prefix}/helloworld\n"
    )

    report = execute(RunRequest(mode=Mode.SYNC, trigger="test"), app_env)

    with RunStore(Settings.from_environ(app_env).storage) as store:
        latest = store.latest()
        by_id = store.load(report.run_id)
    assert report.counts["imported"] == 1
    assert latest is not None
    assert latest["run_id"] == report.run_id
    assert by_id == latest


def test_the_command_line_plan_changes_nothing(
    clean_standin: Standin, app_env: Mapping[str, str], prefix: str, tmp_path: Path
) -> None:
    image_list = tmp_path / "images.txt"
    image_list.write_text(example_list(prefix))

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sync_core",
            "plan",
            "--json",
            "--list",
            str(image_list),
        ],
        cwd=ROOT,
        env=dict(app_env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    report = json.loads(completed.stdout)
    assert completed.returncode == 0, completed.stderr
    assert report["counts"]["import"] == 7
    assert clean_standin.control.stats()["arm"]["import"] == 0


def test_a_run_whose_list_cannot_be_read_still_leaves_a_failed_report(
    clean_standin: Standin, app_env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACRSYNC_LIST_BLOB", "never-published.txt")

    report = execute(RunRequest(mode=Mode.SYNC, trigger="test"), os.environ)

    with RunStore(Settings.from_environ(os.environ).storage) as store:
        stored = store.load(report.run_id)
        latest = store.latest()
    assert report.status is RunStatus.FAILED
    assert "never-published.txt" in (report.message or "")
    assert stored is not None
    assert stored["status"] == "failed"
    assert latest is not None
    assert latest["run_id"] == report.run_id
    assert clean_standin.control.stats()["arm"]["import"] == 0


def test_a_defect_inside_a_run_still_ends_in_a_stored_failed_report(
    clean_standin: Standin, app_env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a defect")

    monkeypatch.setattr("sync_core.run.parse_image_list", broken)

    report = run(Mode.SYNC, "alpine:3.20 => alpine\n", app_env)
    after = run(Mode.SYNC, "", app_env)

    with RunStore(Settings.from_environ(app_env).storage) as store:
        stored = store.load(report.run_id)
    assert report.status is RunStatus.FAILED
    assert "KeyError" in (report.message or "")
    assert stored is not None
    assert stored["status"] == "failed"
    assert after.status is RunStatus.FAILED
    assert after.blocked_by is None
