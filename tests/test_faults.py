"""Every fault from a registry or from Azure ends in a correct report.

Each test injects faults into the stand-in, runs a sync through the real SDK
clients, and asserts each entry's action and reason, the counts, the run's status,
what was imported, and that nothing was imported twice. The regression tests for
the registry and Azure cases of the field notes are named ``test_field_case_N_...``.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from standin.harness import Standin
from sync_core.report import ReportEntry, RunReport, RunStatus
from sync_core.run import Mode, RunRequest, execute

# Waits stay short in tests: a Retry-After of 30 s is honoured up to this cap.
FAST = {
    "ACRSYNC_MAX_RETRY_WAIT_SECONDS": "0.2",
    "ACRSYNC_IMPORT_TIMEOUT_SECONDS": "3",
    "ACRSYNC_POLL_INTERVAL_SECONDS": "0.1",
    "ACRSYNC_REQUEST_TIMEOUT_SECONDS": "5",
}


@pytest.fixture
def azure(clean_standin: Standin, monkeypatch: pytest.MonkeyPatch) -> Standin:
    """The shared stand-in with the app's environment pointed at it, and fast."""
    for name, value in (clean_standin.app_settings() | FAST).items():
        monkeypatch.setenv(name, value)
    return clean_standin


@pytest.fixture
def prefix() -> str:
    return "f" + uuid.uuid4().hex[:8]


def sync(text: str, **request: Any) -> RunReport:
    return execute(
        RunRequest(mode=Mode.SYNC, trigger="test", list_data=text.encode(), **request),
        os.environ,
    )


def by_target(report: RunReport) -> dict[str, ReportEntry]:
    return {row.target.split(":")[0].split("/", 1)[1]: row for row in report.entries}


def imports_of(standin: Standin) -> list[Mapping[str, Any]]:
    return list(standin.control.stats()["imports"])


def assert_nothing_imported_twice(standin: Standin) -> None:
    targets = Counter(tag for item in imports_of(standin) for tag in item["targetTags"])
    assert [tag for tag, count in targets.items() if count > 1] == []


QUAY = "quay.io/jetstack/cert-manager-webhook:v1.15.2"
K8S = "registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.4.1"
MCR = "mcr.microsoft.com/azuredocs/aks-helloworld:v1"


def three(prefix: str) -> str:
    """One entry from each of three registries, in a known order."""
    return "".join(
        f"{source} => {prefix}/{name}\n"
        for source, name in ((QUAY, "webhook"), (K8S, "certgen"), (MCR, "hello"))
    )


@pytest.mark.parametrize("form", ["seconds", "http-date", "unix", None])
def test_field_case_7_a_429_in_any_retry_after_form_is_retried_and_succeeds(
    azure: Standin, prefix: str, form: str | None
) -> None:
    rule: dict[str, Any] = {
        "surface": "public:quay.io",
        "kind": "manifest_head",
        "times": 1,
        "status": 429,
    }
    if form is not None:
        rule["retry_after"] = {"seconds": 30, "form": form}
    azure.control.set_faults([rule])

    report = sync(three(prefix))

    assert report.status is RunStatus.SUCCEEDED
    assert report.counts["imported"] == 3
    assert azure.control.stats()["public"]["quay.io"]["manifest_head"] >= 2


def test_field_case_8_an_import_answering_503_is_retried_then_reported_failed(
    azure: Standin, prefix: str
) -> None:
    azure.control.set_faults(
        [
            {
                "surface": "arm-import",
                "repository": "ingress-nginx/kube-webhook-certgen",
                "status": 503,
            }
        ]
    )

    report = sync(three(prefix))

    rows = by_target(report)
    assert report.status is RunStatus.PARTIAL
    assert [row.action for row in report.entries] == ["imported", "failed", "imported"]
    assert rows["certgen"].reason_code == "import-failed"
    assert rows["certgen"].reach == "temporary"
    assert azure.control.stats()["arm"]["import"] >= 3 + 1
    assert_nothing_imported_twice(azure)


@pytest.mark.parametrize("status", ["Accepted", "Running"])
def test_field_case_9_a_stuck_import_times_out_alone_and_is_not_resubmitted(
    azure: Standin, prefix: str, status: str
) -> None:
    azure.control.set_faults(
        [
            {
                "surface": "arm-import",
                "repository": "jetstack/cert-manager-webhook",
                "import_status": status,
            }
        ]
    )

    report = sync(three(prefix))

    rows = by_target(report)
    assert [row.action for row in report.entries] == ["failed", "imported", "imported"]
    assert rows["webhook"].reason_code == "import-timed-out"
    assert "may still complete" in (rows["webhook"].reason or "")
    assert report.status is RunStatus.PARTIAL
    submitted = [
        i for i in imports_of(azure) if "cert-manager-webhook" in i["sourceImage"]
    ]
    assert len(submitted) == 1


def test_an_import_failing_with_an_arm_error_code_is_a_permanent_failure(
    azure: Standin, prefix: str
) -> None:
    azure.control.set_faults(
        [
            {
                "surface": "arm-import",
                "repository": "azuredocs/aks-helloworld",
                "import_error": {
                    "code": "InvalidParameters",
                    "message": "the source image is malformed",
                },
            }
        ]
    )

    report = sync(three(prefix))

    hello = by_target(report)["hello"]
    assert hello.action == "failed"
    assert hello.reach == "permanent"
    assert "InvalidParameters" in (hello.reason or "")
    assert report.counts["imported"] == 2


def test_field_case_10_a_403_on_import_stops_the_run_after_one_attempt(
    azure: Standin, prefix: str
) -> None:
    azure.control.set_faults([{"surface": "arm-import", "status": 403}])

    report = sync(three(prefix))

    assert report.status is RunStatus.FAILED
    assert "Container Registry Data Importer and Data Reader" in (report.message or "")
    assert azure.config["identity"]["system_assigned"]["principal_id"] in (
        report.message or ""
    )
    assert azure.control.stats()["arm"]["import"] == 1
    actions = Counter(row.action for row in report.entries)
    assert actions == {"failed": 1, "deferred": 2}
    assert {row.reason_code for row in report.entries} == {
        "not-authorized",
        "run-stopped",
    }


def test_a_failing_token_endpoint_stops_the_run_once_and_names_the_setting(
    azure: Standin, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    azure.control.set_faults([{"surface": "identity", "status": 500}])

    with caplog.at_level(logging.ERROR, logger="sync_core"):
        report = sync(three(prefix))

    assert report.status is RunStatus.FAILED
    assert "ACRSYNC_MANAGED_IDENTITY_CLIENT_ID" in (report.message or "")
    assert report.entries == ()
    assert azure.control.stats()["arm"]["import"] == 0
    finished = [r for r in caplog.records if "run finished" in r.getMessage()]
    assert len(finished) == 1


def test_field_case_11_a_client_id_set_to_the_object_id_is_one_clear_error(
    azure: Standin,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    object_id = azure.config["identity"]["system_assigned"]["principal_id"]
    monkeypatch.setenv("ACRSYNC_MANAGED_IDENTITY_CLIENT_ID", object_id)

    with caplog.at_level(logging.DEBUG):
        report = sync(three(prefix))

    assert report.status is RunStatus.FAILED
    assert "ACRSYNC_MANAGED_IDENTITY_CLIENT_ID" in (report.message or "")
    assert "object id" in (report.message or "")
    assert report.entries == ()
    assert azure.control.stats()["arm"]["import"] == 0
    naming = [r for r in caplog.records if "MANAGED_IDENTITY" in r.getMessage()]
    assert len([r for r in naming if "run finished" in r.getMessage()]) == 1
    assert not any("eyJ" in r.getMessage() for r in caplog.records)


def test_field_case_11_an_app_with_no_usable_identity_is_one_clear_error(
    azure: Standin, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A user-assigned identity only, and the client id left empty: the endpoint
    # has no system-assigned identity to give a token for.
    azure.control.set_faults(
        [
            {
                "surface": "identity",
                "status": 400,
                "message": "No managed identity is assigned to this app.",
            }
        ]
    )

    with caplog.at_level(logging.DEBUG):
        report = sync(three(prefix))

    assert report.status is RunStatus.FAILED
    assert "ACRSYNC_MANAGED_IDENTITY_CLIENT_ID" in (report.message or "")
    assert report.entries == ()
    assert azure.control.stats()["arm"]["import"] == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert not any("eyJ" in r.getMessage() for r in caplog.records)


def test_a_user_assigned_identity_by_its_client_id_works(
    azure: Standin, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id = azure.config["identity"]["user_assigned"][0]["client_id"]
    monkeypatch.setenv("ACRSYNC_MANAGED_IDENTITY_CLIENT_ID", client_id)

    report = sync(f"{MCR} => {prefix}/hello\n")

    assert report.status is RunStatus.SUCCEEDED


def test_a_tag_that_does_not_resolve_after_a_successful_import_fails_verification(
    azure: Standin, prefix: str
) -> None:
    azure.control.set_faults(
        [
            {
                "surface": "arm-import",
                "repository": "jetstack/cert-manager-webhook",
                "dangling_tag": True,
            }
        ]
    )

    report = sync(three(prefix))

    webhook = by_target(report)["webhook"]
    assert webhook.action == "failed"
    assert webhook.reason_code == "verification-failed"
    assert report.counts["imported"] == 2


def test_refused_connections_to_a_source_fail_only_its_entries(
    azure: Standin, prefix: str
) -> None:
    azure.control.set_faults([{"surface": "public:quay.io", "close": True}])

    report = sync(three(prefix))

    webhook = by_target(report)["webhook"]
    assert webhook.action == "failed"
    assert webhook.reason_code == "registry-unavailable"
    assert webhook.reach == "temporary"
    assert report.counts["imported"] == 2


def test_latency_on_every_request_slows_the_run_but_changes_no_outcome(
    azure: Standin, prefix: str
) -> None:
    azure.control.configure(latency_ms=40)

    report = sync(three(prefix))

    assert report.status is RunStatus.SUCCEEDED
    assert report.counts["imported"] == 3


def docker_hub_list(standin: Standin, prefix: str) -> str:
    """Three Docker Hub images and two from other registries."""
    for repository in ("library/alpine", "library/busybox"):
        standin.move_tag("docker.io", repository, "1")
    return (
        f"docker.io/library/alpine:1 => {prefix}/alpine\n"
        f"{QUAY} => {prefix}/webhook\n"
        f"docker.io/library/busybox:1 => {prefix}/busybox\n"
        f"{MCR} => {prefix}/hello\n"
        f"docker.io/cloudflare/cloudflared:latest => {prefix}/cloudflared\n"
    )


def test_field_case_6_a_docker_hub_429_on_import_holds_back_docker_hub_only(
    azure: Standin, prefix: str
) -> None:
    text = docker_hub_list(azure, prefix)
    azure.control.set_faults(
        [{"surface": "public:docker.io", "kind": "manifest_get", "status": 429}]
    )

    report = sync(text, **{})

    rows = by_target(report)
    docker_hub = [rows["alpine"], rows["busybox"], rows["cloudflared"]]
    assert [row.action for row in docker_hub].count("failed") == 1
    assert [row.action for row in docker_hub].count("deferred") == 2
    failed = next(row for row in docker_hub if row.action == "failed")
    assert failed.reason_code == "rate-limited"
    assert failed.reach == "temporary"
    assert {row.reason_code for row in docker_hub if row.action == "deferred"} == {
        "rate-limited"
    }
    assert rows["webhook"].action == rows["hello"].action == "imported"
    assert report.status is RunStatus.PARTIAL
    docker_hub_imports = [i for i in imports_of(azure) if i["source"] == "docker.io"]
    assert len(docker_hub_imports) == 1


def test_docker_hub_work_is_deferred_below_the_pull_floor(
    azure: Standin, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = docker_hub_list(azure, prefix)
    monkeypatch.setenv("ACRSYNC_DOCKERHUB_PULL_FLOOR", "100000")

    report = sync(text)

    rows = by_target(report)
    for name in ("alpine", "busybox", "cloudflared"):
        assert rows[name].action == "deferred"
        assert rows[name].reason_code == "rate-limit-floor"
    assert rows["webhook"].action == rows["hello"].action == "imported"
    assert [i for i in imports_of(azure) if i["source"] == "docker.io"] == []


def test_imports_stop_starting_when_the_run_budget_runs_low(
    azure: Standin, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACRSYNC_MAX_CONCURRENCY", "1")
    monkeypatch.setenv("ACRSYNC_IMPORT_TIMEOUT_SECONDS", "2")
    azure.control.configure(import_duration_ms=1500)

    report = sync(three(prefix), budget_seconds=3.0)

    actions = Counter(row.action for row in report.entries)
    assert actions == {"imported": 1, "deferred": 2}
    deferred = [row for row in report.entries if row.action == "deferred"]
    assert {row.reason_code for row in deferred} == {"budget-exhausted"}
    assert report.status is RunStatus.PARTIAL
    assert len(imports_of(azure)) == 1


def test_field_case_7_no_retry_waits_past_the_run_budget(
    azure: Standin, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACRSYNC_MAX_RETRY_WAIT_SECONDS", "30")
    azure.control.set_faults(
        [
            {
                "surface": "public:quay.io",
                "kind": "manifest_head",
                "status": 429,
                "retry_after": {"seconds": 20, "form": "seconds"},
            }
        ]
    )

    report = sync(three(prefix), budget_seconds=5.0)

    webhook = by_target(report)["webhook"]
    assert webhook.action == "failed"
    assert webhook.reason_code == "rate-limited"
    assert webhook.duration_seconds < 5.0
    assert azure.control.stats()["public"]["quay.io"]["manifest_head"] == 1
    assert report.counts["imported"] == 2


def test_field_case_12_two_runs_at_once_exactly_one_works(
    azure: Standin, prefix: str
) -> None:
    azure.control.configure(import_duration_ms=1500)
    reports: list[RunReport] = []
    started = threading.Barrier(2)

    def run(trigger: str) -> None:
        started.wait()
        reports.append(
            execute(
                RunRequest(
                    mode=Mode.SYNC, trigger=trigger, list_data=three(prefix).encode()
                ),
                os.environ,
            )
        )

    threads = [threading.Thread(target=run, args=(t,)) for t in ("timer", "http")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(report.status for report in reports)
    assert statuses == [RunStatus.REFUSED, RunStatus.SUCCEEDED]
    worked = next(r for r in reports if r.status is RunStatus.SUCCEEDED)
    refused = next(r for r in reports if r.status is RunStatus.REFUSED)
    assert refused.blocked_by == worked.run_id
    assert "already running" in (refused.message or "")
    assert len(imports_of(azure)) == 3
    assert_nothing_imported_twice(azure)


def test_a_crashed_runs_lock_does_not_block_the_next_run_forever(
    azure: Standin, prefix: str
) -> None:
    from sync_core.runstore import RunStore
    from sync_core.settings import Settings

    with RunStore(Settings.from_environ(os.environ).storage) as store:
        lock = store.lock("crashed-run")
        lock.acquire()
        # A crashed run never renews nor releases; stop renewing, keep the lease.
        lock._stop.set()

        blocked = sync(three(prefix))
        lock._lease.break_lease(lease_break_period=0)
        after = sync(three(prefix))

    assert blocked.status is RunStatus.REFUSED
    assert blocked.blocked_by == "crashed-run"
    assert after.status is RunStatus.SUCCEEDED


SECRET_HINTS: Sequence[str] = ("eyJ",)


def test_no_secret_reaches_a_log_record_or_a_report(
    azure: Standin,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = azure.app_settings(with_dockerhub_credentials=True)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    text = docker_hub_list(azure, prefix) + "quay.io/no/such-image:1 => nothing\n"
    azure.control.set_faults(
        [
            {"surface": "arm-import", "repository": "library/alpine", "status": 503},
            {
                "surface": "public:docker.io",
                "kind": "manifest_head",
                "times": 1,
                "status": 429,
            },
        ]
    )
    secrets = [
        settings["ACRSYNC_DOCKERHUB_TOKEN"],
        settings["IDENTITY_HEADER"],
        settings["ACRSYNC_STORAGE"].split("AccountKey=")[1].split(";")[0],
    ]

    with caplog.at_level(logging.DEBUG):
        report = sync(text)

    texts = [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info) for record in caplog.records if record.exc_info]
    texts.append(report.to_json())
    for text_ in texts:
        for secret in (*secrets, *SECRET_HINTS):
            assert secret not in text_
    assert report.counts["imported"] >= 1
