"""The stand-in harness: seeding, moving tags, app settings, start and stop."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from standin.harness import EXAMPLE_IMAGE_LIST, AlreadyRunningError, Standin
from standin.images import (
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    Content,
    Digest,
    registry_session,
)
from standin.processes import (
    PROJECT_ROOT,
    MissingToolError,
    Processes,
    StartError,
    read_records,
    stop_records,
)
from standin.seed import SourceImage, parse_source, read_sources
from sync_core.settings import Settings

PUBLIC_REGISTRIES = {
    "docker.io",
    "quay.io",
    "registry.k8s.io",
    "mcr.microsoft.com",
    "ghcr.io",
}
REQUIRED_SETTINGS = {
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "ACRSYNC_SUBSCRIPTION_ID",
    "ACRSYNC_RESOURCE_GROUP",
    "ACRSYNC_REGISTRY_NAME",
    "ACRSYNC_LOGIN_SERVER",
    "ACRSYNC_ARM_ENDPOINT",
    "ACRSYNC_REGISTRY_ENDPOINTS",
    "ACRSYNC_STORAGE",
    "ACRSYNC_LIST_CONTAINER",
    "ACRSYNC_LIST_BLOB",
}
DOCKERHUB_SETTINGS = {"ACRSYNC_DOCKERHUB_USERNAME", "ACRSYNC_DOCKERHUB_TOKEN"}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            "registry.k8s.io/ingress-nginx/controller:v1.11.1 => ingress/controller",
            SourceImage("registry.k8s.io", "ingress-nginx/controller", "v1.11.1"),
            id="host, nested repository, tag, target",
        ),
        pytest.param(
            "docker.io/cloudflare/cloudflared:latest",
            SourceImage("docker.io", "cloudflare/cloudflared", "latest"),
            id="no target",
        ),
        pytest.param(
            "nginx",
            SourceImage("docker.io", "library/nginx", "latest"),
            id="Docker Hub default host, library/ and latest",
        ),
        pytest.param(
            "index.docker.io/nginx:1.27 # web",
            SourceImage("docker.io", "library/nginx", "1.27"),
            id="Docker Hub alias and a trailing comment",
        ),
        pytest.param(
            "localhost:5000/team/app:v2 => app",
            SourceImage("localhost:5000", "team/app", "v2"),
            id="host with a port",
        ),
        pytest.param(
            "quay.io/app:v1@sha256:" + "a" * 64,
            SourceImage("quay.io", "app", "v1"),
            id="tag and digest seed under the tag",
        ),
        pytest.param("quay.io/app@sha256:" + "a" * 64, None, id="digest alone"),
        pytest.param("   ", None, id="blank"),
        pytest.param("# a comment", None, id="comment"),
    ],
)
def test_a_list_line_gives_its_source_image(
    line: str, expected: SourceImage | None
) -> None:
    source = parse_source(line)

    assert source == expected


def test_every_listed_source_is_seeded_with_the_digest_the_backend_reports(
    standin: Standin,
) -> None:
    listed = read_sources(EXAMPLE_IMAGE_LIST)

    reported = {
        str(source): standin.public_digest(source.host, source.repository, source.tag)
        for source in listed
    }

    seeded = standin.seeded_digests()
    assert len(reported) == 7
    assert reported == {str(source): seeded[str(source)] for source in listed}


@pytest.mark.parametrize(
    ("reference", "media_type"),
    [
        ("registry.k8s.io/ingress-nginx/controller:v1.11.1", OCI_INDEX),
        ("docker.io/cloudflare/cloudflared:latest", OCI_INDEX),
        ("quay.io/jetstack/cert-manager-webhook:v1.15.2", OCI_MANIFEST),
    ],
)
def test_a_seeded_tag_resolves_to_the_digest_of_its_top_manifest(
    standin: Standin, reference: str, media_type: str
) -> None:
    source = _source(reference)

    served_type, served_digest = _top_manifest(standin, source)

    assert served_type == media_type
    assert standin.public_digest(source.host, source.repository, source.tag) == (
        served_digest
    )


def test_move_tag_changes_exactly_one_digest(standin: Standin) -> None:
    # Tags of their own, so the shared stand-in's seeded list stays as it was.
    standin.move_tag("ghcr.io", "standin-tests/moved", "v1", multi_platform=True)
    standin.move_tag("ghcr.io", "standin-tests/moved", "v2")
    before = _public_digests(standin)

    moved = standin.move_tag("ghcr.io", "standin-tests/moved", "v1")

    after = _public_digests(standin)
    changed = {ref for ref in before if before[ref] != after[ref]}
    assert changed == {"ghcr.io/standin-tests/moved:v1"}
    assert after["ghcr.io/standin-tests/moved:v1"] == moved
    assert _top_manifest(standin, _source("ghcr.io/standin-tests/moved:v1")) == (
        OCI_INDEX,
        moved,
    )


def test_the_harness_settings_are_complete(standin: Standin) -> None:
    plain = standin.app_settings()
    with_dockerhub = standin.app_settings(with_dockerhub_credentials=True)

    settings = Settings.from_environ(with_dockerhub)
    assert set(plain) == REQUIRED_SETTINGS
    assert set(with_dockerhub) == REQUIRED_SETTINGS | DOCKERHUB_SETTINGS
    assert all(value for value in with_dockerhub.values())
    assert Path(plain["REQUESTS_CA_BUNDLE"]).is_file()
    assert settings.login_server == f"127.0.0.1:{standin.ports.acr}"
    assert settings.arm_endpoint == f"https://127.0.0.1:{standin.ports.arm}"
    assert settings.dockerhub is not None
    assert {host: settings.registry_endpoint(host) for host in PUBLIC_REGISTRIES} == {
        host: f"https://127.0.0.1:{standin.ports.public[host]}"
        for host in PUBLIC_REGISTRIES
    }


def test_the_image_list_is_where_the_settings_point(standin: Standin) -> None:
    from azure.storage.blob import BlobClient

    settings = standin.app_settings()
    blob = BlobClient.from_connection_string(
        settings["ACRSYNC_STORAGE"],
        settings["ACRSYNC_LIST_CONTAINER"],
        settings["ACRSYNC_LIST_BLOB"],
    )

    with blob:
        text = blob.download_blob().readall().decode()

    assert text == EXAMPLE_IMAGE_LIST.read_text()


def test_attach_sees_the_running_standin(standin: Standin) -> None:
    attached = Standin.attach(standin.state_dir)

    attached.close()
    assert attached.ports == standin.ports
    assert attached.app_settings() == standin.app_settings()


def test_a_second_start_in_a_running_directory_is_refused(standin: Standin) -> None:
    with pytest.raises(AlreadyRunningError, match="one stand-in per state directory"):
        Standin.start(standin.state_dir)

    assert all(record.is_alive() for record in standin.processes)


def test_clean_standin_clears_faults_counters_and_tunables(
    standin: Standin, request: pytest.FixtureRequest
) -> None:
    started_with = standin.control.tunables()
    standin.control.configure(
        latency_ms=1, poll_after_ms=started_with["poll_after_ms"] + 1
    )
    standin.control.set_faults([{"surface": "public:quay.io", "status": 503}])
    assert _get_through_standin(standin, "quay.io", "/v2/") == 503

    clean = request.getfixturevalue("clean_standin")

    assert clean.control.faults() == []
    assert clean.control.tunables() == started_with
    assert clean.control.stats()["public"]["quay.io"]["other"] == 0
    assert _get_through_standin(standin, "quay.io", "/v2/") != 503


def test_start_and_stop_leave_no_process_behind(tmp_path: Path) -> None:
    standin = Standin.start(tmp_path)
    records = read_records(tmp_path)
    running = [record.is_alive() for record in records]

    standin.stop()

    assert [record.name for record in records] == [
        "azurite-blob",
        "azurite-queue",
        "acr-backend",
        "public-backend",
        "server",
    ]
    assert all(running)
    assert not any(record.is_alive() for record in records)
    assert not any(Path(f"/proc/{record.pid}").exists() for record in records)


def test_a_missing_program_fails_naming_it_and_the_command_that_installs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(MissingToolError) as raised:
        Processes(tmp_path).start_registry("registry")

    assert "docker-registry" in str(raised.value)
    assert "make test" in str(raised.value)


def test_a_process_that_exits_early_fails_the_start_with_its_log(
    tmp_path: Path,
) -> None:
    processes = Processes(tmp_path)

    with pytest.raises(StartError) as raised:
        processes.start_server(tmp_path / "absent.json", tmp_path / "ca.pem")

    assert "server exited with status" in str(raised.value)
    assert "absent.json" in str(raised.value)
    assert not any(record.is_alive() for record in processes.records)


@pytest.fixture
def cli_state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state directory for the command line; whatever it left running is stopped."""
    state_dir = tmp_path / "cli"
    try:
        yield state_dir
    finally:
        stop_records(read_records(state_dir))


def test_the_command_line_starts_a_standin_that_outlives_it_and_stops_it(
    cli_state_dir: Path,
) -> None:
    started = _cli("start", "--dir", str(cli_state_dir))
    printed = _cli("env", "--dir", str(cli_state_dir))
    running = _cli("status", "--dir", str(cli_state_dir))
    records = read_records(cli_state_dir)

    stopped = _cli("stop", "--dir", str(cli_state_dir))

    after = _cli("status", "--dir", str(cli_state_dir))
    assert started.returncode == 0, started.stderr
    assert {line.split("=", 1)[0] for line in started.stdout.splitlines()} == {
        f"export {name}" for name in REQUIRED_SETTINGS
    }
    assert printed.stdout == started.stdout
    assert running.returncode == 0, running.stdout + running.stderr
    assert stopped.returncode == 0, stopped.stderr
    assert after.returncode == 1
    assert len(records) == 5
    assert not any(record.is_alive() for record in records)


def _cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "standin", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=PROJECT_ROOT,
        env=environment,
    )


def _get_through_standin(standin: Standin, host: str, path: str) -> int:
    """The status a public registry front of the stand-in answers."""
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(
            f"https://127.0.0.1:{standin.ports.public[host]}{path}",
            verify=str(standin.ca_cert),
            timeout=10,
        )
    return response.status_code


def _source(reference: str) -> SourceImage:
    source = parse_source(reference)
    assert source is not None
    return source


def _public_digests(standin: Standin) -> dict[str, Digest | None]:
    return {
        reference: standin.public_digest(source.host, source.repository, source.tag)
        for reference, source in (
            (reference, _source(reference)) for reference in standin.seeded_digests()
        )
    }


def _top_manifest(standin: Standin, source: SourceImage) -> tuple[str, Digest]:
    """The media type of what a tag serves, and the digest of the bytes served."""
    with registry_session() as session:
        response = session.get(
            f"{standin.public_backend}/v2/{source.backend_repository}"
            f"/manifests/{source.tag}",
            headers={"Accept": MANIFEST_ACCEPT},
            timeout=10,
        )
    response.raise_for_status()
    return response.headers["Content-Type"], Content("", response.content).digest
