"""Images made without Docker: fixed bytes per seed, digests a registry agrees with."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from standin.images import (
    MANIFEST_ACCEPT,
    MULTI_PLATFORM,
    OCI_INDEX,
    OCI_MANIFEST,
    SINGLE_PLATFORM,
    Platform,
    build_image,
    head_digest,
    push_image,
    registry_session,
)
from standin.processes import MissingToolError, Processes


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One empty docker-registry on loopback; its base URL."""
    processes = Processes(tmp_path_factory.mktemp("registry"))
    try:
        url = processes.start_registry("registry")
    except MissingToolError as error:
        processes.stop()
        pytest.fail(str(error), pytrace=False)
    try:
        yield url
    finally:
        processes.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with registry_session() as session:
        yield session


@pytest.mark.parametrize("platforms", [SINGLE_PLATFORM, MULTI_PLATFORM])
def test_the_same_seed_gives_the_same_bytes(platforms: tuple[Platform, ...]) -> None:
    first = build_image("quay.io/jetstack/cert-manager-webhook:v1.15.2#0", platforms)

    second = build_image("quay.io/jetstack/cert-manager-webhook:v1.15.2#0", platforms)

    assert first == second
    assert first.digest == second.digest


@pytest.mark.parametrize(
    ("first_seed", "second_seed"),
    [
        pytest.param(
            "docker.io/library/nginx:1#0", "docker.io/library/nginx:1#1", id="moved"
        ),
        pytest.param(
            "docker.io/library/nginx:1#0", "docker.io/library/nginx:2#0", id="other tag"
        ),
    ],
)
def test_another_seed_gives_another_digest(first_seed: str, second_seed: str) -> None:
    first = build_image(first_seed, MULTI_PLATFORM)

    second = build_image(second_seed, MULTI_PLATFORM)

    assert first.digest != second.digest
    assert set(first.manifests).isdisjoint(second.manifests)


def test_a_single_platform_image_is_one_manifest_without_an_index() -> None:
    image = build_image("seed")

    assert not image.is_index
    assert [manifest.media_type for manifest in image.manifests] == [OCI_MANIFEST]


def test_a_multi_platform_image_is_an_index_over_one_manifest_per_platform() -> None:
    image = build_image("seed", MULTI_PLATFORM)

    index = json.loads(image.top.data)
    assert image.is_index
    assert index["mediaType"] == OCI_INDEX
    assert [entry["digest"] for entry in index["manifests"]] == [
        manifest.digest for manifest in image.manifests[:-1]
    ]
    assert [
        f"{entry['platform']['os']}/{entry['platform']['architecture']}"
        for entry in index["manifests"]
    ] == ["linux/amd64", "linux/arm64"]


@pytest.mark.parametrize("platforms", [SINGLE_PLATFORM, MULTI_PLATFORM])
def test_a_pushed_tag_resolves_to_the_top_manifest_digest(
    registry: str, session: requests.Session, platforms: tuple[Platform, ...]
) -> None:
    image = build_image(f"pushed {len(platforms)}", platforms)

    digest = push_image(session, registry, "docker.io/example/app", "v1", image)

    assert digest == image.digest
    assert head_digest(session, registry, "docker.io/example/app", "v1") == image.digest
    assert (
        head_digest(session, registry, "docker.io/example/app", image.digest) == digest
    )


def test_a_multi_platform_tag_answers_with_the_index_for_the_usual_accept_types(
    registry: str, session: requests.Session
) -> None:
    image = build_image("index by get", MULTI_PLATFORM)
    push_image(session, registry, "quay.io/example/app", "v1", image)

    response = session.get(
        f"{registry}/v2/quay.io/example/app/manifests/v1",
        headers={"Accept": MANIFEST_ACCEPT},
        timeout=10,
    )

    assert response.headers["Content-Type"] == OCI_INDEX
    assert response.content == image.top.data


def test_a_missing_tag_has_no_digest(registry: str, session: requests.Session) -> None:
    digest = head_digest(session, registry, "docker.io/example/absent", "v1")

    assert digest is None


def test_a_real_client_copies_every_platform_of_a_pushed_image(
    registry: str, session: requests.Session, tmp_path: Path
) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.fail(
            str(MissingToolError("skopeo", "Debian package skopeo")), pytrace=False
        )
    image = build_image("copied", MULTI_PLATFORM)
    push_image(session, registry, "ghcr.io/example/app", "v1", image)
    source = f"docker://{registry.removeprefix('http://')}/ghcr.io/example/app:v1"

    # skopeo checks every blob and manifest against its digest while it copies;
    # without --preserve-digests it would rewrite the manifests for the OCI layout.
    copied = subprocess.run(
        [
            skopeo,
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            source,
            f"oci:{tmp_path}:v1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert copied.returncode == 0, copied.stderr
    layout_index = json.loads((tmp_path / "index.json").read_text())
    assert [entry["digest"] for entry in layout_index["manifests"]] == [image.digest]
