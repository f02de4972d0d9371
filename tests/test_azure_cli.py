"""The official Azure CLI against the stand-in, unchanged: what today's pipelines
run must work here as it does against Azure, or the benchmark's comparison would
not be fair.

The CLI is installed by ``make test`` (``make az-cli``, into ``.venv-az``). Its
configuration lives in the test's temporary folder, its telemetry and update
checks are off, and a guard proxy refuses, and lists, anything it tries to reach
beyond loopback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.azure_cli import AzureCli, default_az
from bench.guard import GuardProxy
from bench.lists import GeneratedEntry, generate_entries
from bench.seeding import seed_sources
from standin.harness import Standin


@pytest.fixture
def cli(clean_standin: Standin, tmp_path: Path) -> Iterator[AzureCli]:
    """The CLI logged in to the stand-in with its managed identity."""
    az = default_az()
    if not az.exists():
        pytest.fail(
            f"the Azure CLI is needed at {az}: run `make az-cli` (make test does)",
            pytrace=False,
        )
    with GuardProxy() as guard:
        logged_in = AzureCli(az, tmp_path / "azure", clean_standin, guard)
        logged_in.prepare()
        logged_in.log_in()
        yield logged_in
        assert guard.attempts == [], "the CLI must reach nothing beyond loopback"


@pytest.fixture
def source(clean_standin: Standin) -> GeneratedEntry:
    """A Docker Hub tag of this test's own."""
    [entry] = generate_entries(1, prefix=f"cli{uuid.uuid4().hex[:6]}-")
    seed_sources(clean_standin, [entry])
    return entry


def test_az_acr_import_force_copies_the_image_the_tag_names(
    cli: AzureCli, source: GeneratedEntry
) -> None:
    expected = cli.standin.public_digest(source.host, source.repository, source.tag)
    cli.standin.control.reset_stats()

    cli.import_image(
        source.source, source.target, registry=cli.standin.config["registry_name"]
    )

    stats = cli.standin.control.stats()
    assert expected is not None
    assert cli.standin.acr_digest(source.target_repository, source.tag) == expected
    assert stats["arm"]["import"] == 1
    [record] = stats["imports"]
    assert record["mode"] == "Force"
    assert record["status"] == "Succeeded"
    assert stats["via_import"]["docker.io"]["manifest_get"] == 1


def test_az_acr_import_without_force_refuses_to_move_an_existing_tag(
    cli: AzureCli, source: GeneratedEntry
) -> None:
    registry = cli.standin.config["registry_name"]
    cli.import_image(source.source, source.target, registry=registry)
    cli.standin.move_tag(source.host, source.repository, source.tag)

    refused = cli.run(
        [
            "acr", "import", "--name", registry,
            "--source", source.source, "--image", source.target,
        ]
    )  # fmt: skip

    assert refused.returncode != 0
    assert "TagAlreadyExists" in refused.stderr or "already exists" in refused.stderr


# What the CLI needs of the stand-in's Resource Manager


def arm_get(standin: Standin, path: str, **params: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(standin.ca_cert)
        token = session.get(
            standin.app_settings()["IDENTITY_ENDPOINT"],
            params={
                "api-version": "2019-08-01",
                "resource": "https://management.azure.com",
            },
            headers={"X-IDENTITY-HEADER": standin.app_settings()["IDENTITY_HEADER"]},
            timeout=10,
        ).json()["access_token"]
        return session.get(
            f"https://127.0.0.1:{standin.ports.arm}{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )


@pytest.mark.parametrize(
    ("api_version", "shape"),
    [
        ("2022-09-01", dict),  # az cloud register --endpoint-resource-manager
        ("2019-10-01", dict),
        ("2019-05-01", list),  # ARM_CLOUD_METADATA_URL: every cloud
    ],
)
def test_the_cloud_metadata_has_the_shape_its_api_version_gives(
    clean_standin: Standin, api_version: str, shape: type
) -> None:
    answer = arm_get(
        clean_standin, "/metadata/endpoints", **{"api-version": api_version}
    )

    document = answer.json()
    cloud = document[0] if isinstance(document, list) else document
    assert answer.status_code == 200
    assert isinstance(document, shape)
    assert cloud["resourceManager"] == f"https://127.0.0.1:{clean_standin.ports.arm}/"
    assert cloud["authentication"]["audiences"]


@pytest.mark.parametrize(
    ("resource_filter", "found"),
    [
        ("resourceType eq 'Microsoft.ContainerRegistry/registries'", 1),
        (
            "resourceType eq 'microsoft.containerregistry/registries' "
            "and name eq 'mirror'",
            1,
        ),
        ("resourceType eq 'Microsoft.Storage/storageAccounts'", 0),
        ("", 1),
    ],
)
def test_the_resource_list_finds_the_registry_by_type_and_name(
    clean_standin: Standin, resource_filter: str, found: int
) -> None:
    subscription = clean_standin.config["subscription_id"]

    answer = arm_get(
        clean_standin,
        f"/subscriptions/{subscription}/resources",
        **{"api-version": "2024-11-01", "$filter": resource_filter},
    )

    assert answer.status_code == 200
    assert len(answer.json()["value"]) == found
    for resource in answer.json()["value"]:
        assert "/resourceGroups/rg-image-sync/" in resource["id"]


def test_a_resource_filter_the_stand_in_does_not_know_is_refused(
    clean_standin: Standin,
) -> None:
    subscription = clean_standin.config["subscription_id"]

    answer = arm_get(
        clean_standin,
        f"/subscriptions/{subscription}/resources",
        **{"api-version": "2024-11-01", "$filter": "tagName eq 'team'"},
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidFilterInQueryString"
