"""The Azure stand-in server, driven by the official clients and by plain HTTP.

The official clients (azure-identity, azure-mgmt-containerregistry,
azure-containerregistry, skopeo) must work against it unchanged; plain HTTP checks
the wire details they do not show.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from standin.harness import Standin
from standin.processes import PROJECT_ROOT
from standin.tokens import TokenSigner
from tests.standin_helpers_server import (
    ACR_AUDIENCE,
    ARM_SCOPE,
    MANIFEST_ACCEPT,
    MULTI_PLATFORM_SOURCE,
    OCI_INDEX,
    OCI_MANIFEST,
    TOKEN_USER,
    Live,
    new_repository,
    skopeo_inspect_raw,
)


@pytest.fixture
def live(clean_standin: Standin, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """The shared stand-in, its identity endpoint in the environment."""
    monkeypatch.setenv(
        "IDENTITY_ENDPOINT",
        f"http://127.0.0.1:{clean_standin.ports.identity}/msi/token",
    )
    monkeypatch.setenv(
        "IDENTITY_HEADER", clean_standin.config["identity"]["header_secret"]
    )
    for name in (
        "AZURE_CLIENT_ID",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "IDENTITY_SERVER_THUMBPRINT",
    ):
        monkeypatch.delenv(name, raising=False)
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(clean_standin.ca_cert)
        yield Live(clean_standin, session)


def claims_of(token: str) -> dict[str, Any]:
    return TokenSigner.read_unverified(token)


def error_code(error: HttpResponseError) -> str | None:
    """The ARM error code an SDK error carries."""
    if error.error is not None and error.error.code:
        return str(error.error.code)
    if error.response is None:
        return None
    body = json.loads(error.response.text() or "{}")
    return str(body.get("error", {}).get("code"))


def wait_for_status(live: Live, status_url: str, wanted: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        body: dict[str, Any] = live.session.get(
            status_url, headers={"Authorization": f"Bearer {live.aad_token()}"}
        ).json()
        if body["status"] in wanted or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


# Managed identity


def test_managed_identity_credential_gets_a_token_for_the_system_identity(
    live: Live,
) -> None:
    token = live.credential().get_token(ARM_SCOPE)

    claims = claims_of(token.token)
    identity = live.config["identity"]["system_assigned"]
    assert claims["aud"] == "https://management.azure.com"
    assert claims["oid"] == identity["principal_id"]
    assert claims["appid"] == identity["client_id"]
    assert claims["tid"] == live.config["tenant_id"]
    assert token.expires_on > time.time() + 60


def test_a_user_assigned_identity_is_chosen_by_its_client_id(live: Live) -> None:
    user = live.config["identity"]["user_assigned"][0]

    token = live.credential(client_id=user["client_id"]).get_token(ARM_SCOPE)

    assert claims_of(token.token)["oid"] == user["principal_id"]


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("header missing", 400, "X-IDENTITY-HEADER header is missing"),
        ("header wrong", 401, "X-IDENTITY-HEADER header is invalid"),
        ("resource missing", 400, "'resource' parameter is required"),
        ("client id unknown", 400, "Unable to load the proper Managed Identity"),
        ("client id is the system object id", 400, "Unable to load the proper Managed"),
        ("api-version other", 400, "api-version must be 2019-08-01"),
    ],
)
def test_the_identity_endpoint_refuses_as_app_service_does(
    live: Live, case: str, status: int, message: str
) -> None:
    headers = {"X-IDENTITY-HEADER": live.config["identity"]["header_secret"]}
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}
    if case == "header missing":
        headers = {}
    elif case == "header wrong":
        headers = {"X-IDENTITY-HEADER": "not-the-secret"}
    elif case == "resource missing":
        del params["resource"]
    elif case == "client id unknown":
        params["client_id"] = "00000000-1111-2222-3333-444444444444"
    elif case == "client id is the system object id":
        params["client_id"] = live.system_principal
    else:
        params["api-version"] = "2017-09-01"

    response = live.session.get(live.identity_url, params=params, headers=headers)

    assert response.status_code == status
    assert response.json()["statusCode"] == status
    assert message in response.json()["message"]


# Import through the management SDK


def test_an_import_copies_a_multi_platform_index_and_keeps_its_digest(
    live: Live,
) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    seeded = live.standin.seeded_digests()[f"{host}/{repository}:{tag}"]
    target = new_repository("ingress")
    credential = live.credential()

    live.begin_import(
        live.arm_client(credential),
        {
            "source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"},
            "targetTags": [f"{target}:{tag}"],
            "mode": "NoForce",
        },
    ).result()

    properties = live.acr_client(credential).get_tag_properties(target, tag)
    assert properties.digest == seeded
    source_bytes = live.manifest_bytes(
        live.standin.public_backend, f"{host}/{repository}", tag
    )
    target_bytes = live.manifest_bytes(live.standin.acr_backend, target, tag)
    assert target_bytes == source_bytes
    for child in json.loads(source_bytes)["manifests"]:
        child_bytes = live.manifest_bytes(
            live.standin.acr_backend, target, child["digest"]
        )
        assert child_bytes == live.manifest_bytes(
            live.standin.public_backend, f"{host}/{repository}", child["digest"]
        )


def test_an_import_by_digest_into_an_untagged_repository_keeps_the_digest(
    live: Live,
) -> None:
    digest = live.push_public("quay.io", "team/tool", "v1")
    target = new_repository("untagged")

    live.begin_import(
        live.arm_client(live.credential()),
        {
            "source": {"registryUri": "quay.io", "sourceImage": f"team/tool@{digest}"},
            "untaggedTargetRepositories": [target],
        },
    ).result()

    assert live.standin.acr_digest(target, digest) == digest
    assert live.standin.acr_digest(target, "v1") is None


def test_a_target_without_a_tag_takes_the_source_tag(live: Live) -> None:
    digest = live.push_public("ghcr.io", "org/app", "2.0")
    target = new_repository("notag")

    live.begin_import(
        live.arm_client(live.credential()),
        {
            "source": {"registryUri": "ghcr.io", "sourceImage": "org/app:2.0"},
            "targetTags": [target],
        },
    ).result()

    assert live.standin.acr_digest(target, "2.0") == digest


def test_an_import_from_docker_hub_aliases_counts_each_manifest_get_as_a_pull(
    live: Live,
) -> None:
    digest = live.push_public("docker.io", "library/alpine", "3.20")
    target = new_repository("alpine")

    live.begin_import(
        live.arm_client(live.credential()),
        {
            "source": {
                "registryUri": "registry-1.docker.io",
                "sourceImage": "library/alpine:3.20",
            },
            "targetTags": [f"{target}:3.20"],
        },
    ).result()

    stats = live.standin.control.stats()
    assert live.standin.acr_digest(target, "3.20") == digest
    assert stats["public"]["docker.io"]["manifest_get"] == 1
    assert stats["public"]["docker.io"]["token"] == 1
    assert stats["arm"]["import"] == 1
    [record] = stats["imports"]
    assert record["status"] == "Succeeded"
    assert record["digest"] == digest
    assert record["sourceImage"] == "library/alpine:3.20"
    assert record["targetTags"] == [f"{target}:3.20"]
    assert record["credentials"] is False


def test_docker_hub_credentials_sent_with_an_import_are_checked(live: Live) -> None:
    live.push_public("docker.io", "axoniq/axonserver", "2024.1")
    known = live.config["dockerhub_credentials"]
    client = live.arm_client(live.credential())
    body: dict[str, Any] = {
        "source": {
            "registryUri": "docker.io",
            "sourceImage": "axoniq/axonserver:2024.1",
            "credentials": {
                "username": known["username"],
                "password": known["password"],
            },
        },
        "targetTags": [f"{new_repository('axon')}:2024.1"],
    }
    live.begin_import(client, body).result()

    body["source"]["credentials"]["password"] = "wrong"
    with pytest.raises(HttpResponseError) as refused:
        live.begin_import(client, body).result()

    assert error_code(refused.value) == "SourceRegistryAuthenticationFailed"
    records = live.standin.control.stats()["imports"]
    assert [record["credentials"] for record in records] == [True, True]
    assert [record["status"] for record in records] == ["Succeeded", "Failed"]


@pytest.mark.parametrize(
    ("registry", "image", "code", "words"),
    [
        (
            "docker.io",
            "nats:2.1.8",
            "SourceImageNotFound",
            "does not exist or requires",
        ),
        (
            "docker.io",
            "library/nope:1",
            "SourceImageNotFound",
            "does not exist or requires",
        ),
        (
            "registry.k8s.io",
            "ingress-nginx/controller:v0.0.0",
            "SourceImageNotFound",
            "MANIFEST_UNKNOWN",
        ),
        (
            "registry.example.org",
            "team/app:1",
            "InvalidParameters",
            "cannot be reached",
        ),
    ],
    ids=[
        "docker hub adds no library prefix",
        "repository missing",
        "tag missing",
        "unknown registry",
    ],
)
def test_an_import_of_what_is_not_there_fails_with_a_clear_error(
    live: Live, registry: str, image: str, code: str, words: str
) -> None:
    client = live.arm_client(live.credential())

    with pytest.raises(HttpResponseError) as failed:
        live.begin_import(
            client,
            {
                "source": {"registryUri": registry, "sourceImage": image},
                "targetTags": ["x/y:z"],
            },
        ).result()

    assert error_code(failed.value) == code
    assert words in str(failed.value)


def test_mode_noforce_refuses_to_move_a_tag_and_force_moves_it(live: Live) -> None:
    first = live.push_public("mcr.microsoft.com", "moving/app", "latest")
    target = f"{new_repository('moving')}:latest"
    client = live.arm_client(live.credential())
    body = {
        "source": {
            "registryUri": "mcr.microsoft.com",
            "sourceImage": "moving/app:latest",
        },
        "targetTags": [target],
        "mode": "NoForce",
    }
    live.begin_import(client, body).result()
    live.begin_import(client, body).result()
    second = live.push_public("mcr.microsoft.com", "moving/app", "latest")

    with pytest.raises(HttpResponseError) as refused:
        live.begin_import(client, body).result()
    live.begin_import(client, {**body, "mode": "Force"}).result()

    repository, tag = target.split(":")
    assert error_code(refused.value) == "TagAlreadyExists"
    assert first != second
    assert live.standin.acr_digest(repository, tag) == second


def test_an_image_of_more_than_fifty_manifests_fails_the_import(live: Live) -> None:
    live.push_public_index("quay.io", "huge/image", "1", children=50)

    with pytest.raises(HttpResponseError) as failed:
        live.begin_import(
            live.arm_client(live.credential()),
            {
                "source": {"registryUri": "quay.io", "sourceImage": "huge/image:1"},
                "targetTags": ["huge:1"],
            },
        ).result()

    assert error_code(failed.value) == "TooManyManifests"


def test_an_import_from_the_registry_itself_copies_between_repositories(
    live: Live,
) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    first = new_repository("self")
    second = new_repository("self")
    client = live.arm_client(live.credential())
    live.begin_import(
        client,
        {
            "source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"},
            "targetTags": [f"{first}:{tag}"],
        },
    ).result()

    live.begin_import(
        client,
        {
            "source": {
                "registryUri": live.login_server,
                "sourceImage": f"{first}:{tag}",
            },
            "targetTags": [f"{second}:{tag}"],
        },
    ).result()

    assert live.standin.acr_digest(second, tag) == live.standin.acr_digest(first, tag)


# The registry client against the ACR data plane


def test_the_registry_client_reads_repositories_tags_and_manifests(live: Live) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    target = new_repository("reader")
    credential = live.credential()
    live.begin_import(
        live.arm_client(credential),
        {
            "source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"},
            "targetTags": [f"{target}:{tag}", f"{target}:stable"],
        },
    ).result()
    client = live.acr_client(credential)

    tag_properties = client.get_tag_properties(target, tag)
    manifest = client.get_manifest_properties(target, tag)
    names = list(client.list_repository_names())
    tags = sorted(item.name for item in client.list_tag_properties(target))

    assert manifest.digest == tag_properties.digest
    assert sorted(manifest.tags) == ["stable", tag]
    assert manifest.repository_name == target
    assert target in names
    assert tags == ["stable", tag]
    assert tag_properties.created_on is not None


def test_the_registry_client_pages_tags_by_the_link_header(live: Live) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    target = new_repository("paged")
    live.begin_import(
        live.arm_client(live.credential()),
        {
            "source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"},
            "targetTags": [f"{target}:{name}" for name in ("a", "b", "c")],
        },
    ).result()

    pages = (
        live.acr_client(live.credential())
        .list_tag_properties(target, results_per_page=2)
        .by_page()
    )

    assert [[item.name for item in page] for page in pages] == [["a", "b"], ["c"]]


def test_the_registry_client_reports_a_missing_tag_as_not_found(live: Live) -> None:
    client = live.acr_client(live.credential())

    with pytest.raises(ResourceNotFoundError):
        client.get_tag_properties("no/such-repository", "1")


# ARM on the wire


def test_an_accepted_import_answers_202_with_absolute_polling_urls_on_the_same_port(
    live: Live,
) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    body = {
        "source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"},
        "targetTags": [f"{new_repository()}:1"],
    }

    response = live.post_import(body)
    final = wait_for_status(
        live, response.headers["Azure-AsyncOperation"], {"Succeeded", "Failed"}
    )
    result = live.session.get(
        response.headers["Location"],
        headers={"Authorization": f"Bearer {live.aad_token()}"},
    )

    assert response.status_code == 202
    assert response.headers["Azure-AsyncOperation"].startswith(
        f"{live.arm_url}{live.registry_path}/"
    )
    assert response.headers["Location"].startswith(
        f"{live.arm_url}{live.registry_path}/"
    )
    assert int(response.headers["retry-after-ms"]) > 0
    assert final["status"] == "Succeeded"
    assert result.status_code in {200, 204}


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("no token", "AuthenticationFailed"),
        ("expired", "ExpiredAuthenticationToken"),
        ("wrong audience", "InvalidAuthenticationTokenAudience"),
        ("forged", "InvalidAuthenticationToken"),
        ("other tenant", "InvalidAuthenticationTokenTenant"),
    ],
)
def test_arm_refuses_a_missing_or_bad_token_with_401(
    live: Live, case: str, code: str
) -> None:
    headers: dict[str, str] = {}
    if case == "expired":
        signer = TokenSigner.from_secret(
            live.config["identity"]["header_secret"], clock=lambda: time.time() - 7200
        )
        claims = {
            "aud": "https://management.azure.com",
            "tid": live.config["tenant_id"],
        }
        headers["Authorization"] = f"Bearer {signer.mint(claims, 60)}"
    elif case == "wrong audience":
        headers["Authorization"] = f"Bearer {live.aad_token(audience=ACR_AUDIENCE)}"
    elif case == "forged":
        forged = TokenSigner(b"other key").mint(
            {"aud": "https://management.azure.com"}, 60
        )
        headers["Authorization"] = f"Bearer {forged}"
    elif case == "other tenant":
        other = {"aud": "https://management.azure.com", "tid": "another-tenant"}
        headers["Authorization"] = f"Bearer {live.signer().mint(other, 60)}"

    response = live.session.get(
        f"{live.arm_url}{live.registry_path}",
        params={"api-version": "2025-11-01"},
        headers=headers,
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_an_import_into_another_registry_is_not_found(live: Live) -> None:
    response = live.post_import(
        {"source": {"registryUri": "docker.io", "sourceImage": "a:1"}}, registry="other"
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ResourceNotFound"
    assert (
        "Microsoft.ContainerRegistry/registries/other"
        in response.json()["error"]["message"]
    )


def test_an_import_without_the_role_is_forbidden_naming_action_principal_and_scope(
    live: Live,
) -> None:
    token = live.aad_token(principal="11111111-2222-3333-4444-555555555555")

    response = live.post_import(
        {"source": {"registryUri": "docker.io", "sourceImage": "a:1"}}, token=token
    )

    error = response.json()["error"]
    assert response.status_code == 403
    assert error["code"] == "AuthorizationFailed"
    assert (
        "Microsoft.ContainerRegistry/registries/importImage/action" in error["message"]
    )
    assert "11111111-2222-3333-4444-555555555555" in error["message"]
    assert live.registry_path in error["message"]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("not json", "a body must be JSON"),
        ({"targetTags": ["a:1"]}, "source is required"),
        ({"source": {"sourceImage": "a:1"}}, "registryUri or resourceId is required"),
        ({"source": {"registryUri": "docker.io"}}, "sourceImage is required"),
        (
            {"source": {"registryUri": "docker.io", "sourceImage": "a@sha256:123"}},
            "a digest is sha256 and 64 hex",
        ),
        (
            {"source": {"registryUri": "docker.io", "sourceImage": "Upper/Case:1"}},
            "repository names are lower case",
        ),
        (
            {
                "source": {"registryUri": "docker.io", "sourceImage": "a:1"},
                "mode": "Sometimes",
            },
            "mode is NoForce or Force",
        ),
        (
            {
                "source": {"registryUri": "docker.io", "sourceImage": "a:1"},
                "targetTags": "a:1",
            },
            "targetTags is a list",
        ),
    ],
)
def test_a_malformed_import_body_is_refused_with_400(
    live: Live, body: Any, rule: str
) -> None:
    if body == "not json":
        response = live.session.post(
            f"{live.arm_url}{live.registry_path}/importImage",
            params={"api-version": "2025-11-01"},
            data=b"{not json",
            headers={
                "Authorization": f"Bearer {live.aad_token()}",
                "Content-Type": "application/json",
            },
        )
    else:
        response = live.post_import(body)

    assert response.status_code == 400, rule
    assert response.json()["error"]["code"] in {
        "InvalidRequestContent",
        "InvalidParameters",
    }


def test_arm_answers_the_registry_its_lists_the_subscription_and_the_tenant(
    live: Live,
) -> None:
    headers = {"Authorization": f"Bearer {live.aad_token()}"}
    params = {"api-version": "2025-11-01"}
    subscription = f"/subscriptions/{live.config['subscription_id']}"
    registries = "/providers/Microsoft.ContainerRegistry/registries"

    registry = live.session.get(
        f"{live.arm_url}{live.registry_path}", params=params, headers=headers
    ).json()
    by_subscription = live.session.get(
        f"{live.arm_url}{subscription}{registries}", params=params, headers=headers
    ).json()
    subscriptions = live.session.get(
        f"{live.arm_url}/subscriptions", params=params, headers=headers
    ).json()
    tenants = live.session.get(
        f"{live.arm_url}/tenants", params=params, headers=headers
    ).json()

    assert registry["properties"]["loginServer"] == live.login_server
    assert registry["id"] == live.registry_path
    assert registry["sku"]["name"]
    assert registry["location"]
    assert by_subscription["value"] == [registry]
    assert subscriptions["value"][0]["subscriptionId"] == live.config["subscription_id"]
    assert tenants["value"][0]["tenantId"] == live.config["tenant_id"]


# ACR data plane on the wire


def test_the_acr_answers_401_with_a_bearer_challenge_without_a_token(
    live: Live,
) -> None:
    root = live.session.get(f"{live.acr_url}/v2/")
    manifest = live.session.head(f"{live.acr_url}/v2/some/repo/manifests/1")

    assert root.status_code == 401
    assert root.headers["WWW-Authenticate"] == (
        f'Bearer realm="{live.acr_url}/oauth2/token",service="{live.login_server}"'
    )
    assert manifest.status_code == 401
    assert 'scope="repository:some/repo:pull"' in manifest.headers["WWW-Authenticate"]


def test_an_acr_access_token_covers_exactly_the_repositories_asked(live: Live) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    target = new_repository("scoped")
    live.begin_import(
        live.arm_client(live.credential()),
        {
            "source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"},
            "targetTags": [f"{target}:{tag}"],
        },
    ).result()

    token = live.acr_access_token(
        f"repository:{target}:pull,push", "repository:other/repo:pull"
    )
    own = live.session.head(
        f"{live.acr_url}/v2/{target}/manifests/{tag}",
        headers={"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT},
    )
    elsewhere_token = live.acr_access_token("repository:other/repo:pull")
    refused = live.session.head(
        f"{live.acr_url}/v2/{target}/manifests/{tag}",
        headers={"Authorization": f"Bearer {elsewhere_token}"},
    )

    access = claims_of(token)["access"]
    assert access == [
        {"type": "repository", "name": target, "actions": ["pull"]},
        {"type": "repository", "name": "other/repo", "actions": ["pull"]},
    ]
    assert own.status_code == 200
    assert own.headers["Docker-Content-Digest"] == live.standin.acr_digest(target, tag)
    assert refused.status_code == 401


def test_a_docker_client_gets_an_acr_token_with_basic_auth_and_the_refresh_token(
    live: Live,
) -> None:
    refresh = live.refresh_token()
    params = {"service": live.login_server, "scope": "repository:any/repo:pull"}

    accepted = live.session.get(
        f"{live.acr_url}/oauth2/token", params=params, auth=(TOKEN_USER, refresh)
    )
    refused = live.session.get(
        f"{live.acr_url}/oauth2/token", params=params, auth=("someone", refresh)
    )

    assert accepted.status_code == 200
    assert claims_of(accepted.json()["access_token"])["access"][0]["name"] == "any/repo"
    assert refused.status_code == 401


def test_the_refresh_token_decodes_with_standard_base64_as_the_sdk_reads_it(
    live: Live,
) -> None:
    payload = live.refresh_token().split(".")[1]

    decoded = json.loads(base64.b64decode(payload + "=" * (len(payload) % 4)))

    assert decoded["exp"] > time.time()


def test_the_acr_exchange_refuses_a_token_for_another_audience(live: Live) -> None:
    response = live.session.post(
        f"{live.acr_url}/oauth2/exchange",
        data={
            "grant_type": "access_token",
            "service": live.login_server,
            "access_token": live.aad_token(audience="https://vault.azure.net"),
        },
    )

    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_skopeo_reads_the_same_bytes_from_the_public_front_and_the_acr(
    live: Live, tmp_path: Path
) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    target = new_repository("skopeo")
    live.begin_import(
        live.arm_client(live.credential()),
        {
            "source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"},
            "targetTags": [f"{target}:{tag}"],
        },
    ).result()
    public_port = live.standin.ports.public[host]

    public = skopeo_inspect_raw(
        f"127.0.0.1:{public_port}/{repository}:{tag}", live.ca, tmp_path
    )
    private = skopeo_inspect_raw(
        f"{live.login_server}/{target}:{tag}",
        live.ca,
        tmp_path,
        f"{TOKEN_USER}:{live.refresh_token()}",
    )

    assert public.returncode == 0, public.stderr
    assert private.returncode == 0, private.stderr
    assert json.loads(public.stdout)["mediaType"] == OCI_INDEX
    assert private.stdout == public.stdout


# Public registry fronts


def test_a_missing_public_repository_answers_401_even_with_a_token(live: Live) -> None:
    token = live.public_token("docker.io", "repository:library/missing:pull")
    headers = {"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT}

    response = live.session.get(
        f"{live.public_url('docker.io')}/v2/library/missing/manifests/1",
        headers=headers,
    )

    assert claims_of(token)["access"] == []
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_an_unknown_manifest_in_a_public_repository_answers_404_manifest_unknown(
    live: Live,
) -> None:
    host, repository, _ = MULTI_PLATFORM_SOURCE
    token = live.public_token(host, f"repository:{repository}:pull")

    response = live.session.get(
        f"{live.public_url(host)}/v2/{repository}/manifests/v0.0.0",
        headers={"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT},
    )

    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


@pytest.mark.parametrize(
    ("accept", "status", "media_type"),
    [
        (MANIFEST_ACCEPT, 200, OCI_INDEX),
        (OCI_MANIFEST, 404, None),
        ("application/vnd.docker.distribution.manifest.v2+json", 404, None),
    ],
    ids=[
        "all types give the index",
        "no index type misses an index",
        "docker types miss OCI",
    ],
)
def test_a_public_manifest_honours_the_accept_header(
    live: Live, accept: str, status: int, media_type: str | None
) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    token = live.public_token(host, f"repository:{repository}:pull")

    response = live.session.head(
        f"{live.public_url(host)}/v2/{repository}/manifests/{tag}",
        headers={"Authorization": f"Bearer {token}", "Accept": accept},
    )

    assert response.status_code == status
    if media_type:
        assert response.headers["Content-Type"] == media_type
        assert (
            response.headers["Docker-Content-Digest"]
            == live.standin.seeded_digests()[f"{host}/{repository}:{tag}"]
        )


def test_docker_hub_counts_a_manifest_get_as_a_pull_and_a_head_as_none(
    live: Live,
) -> None:
    live.push_public("docker.io", "library/busybox", "1.36")
    token = live.public_token("docker.io", "repository:library/busybox:pull")
    url = f"{live.public_url('docker.io')}/v2/library/busybox/manifests/1.36"
    headers = {"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT}

    first = live.session.get(url, headers=headers)
    head = live.session.head(url, headers=headers)
    second = live.session.get(url, headers=headers)

    assert first.headers["ratelimit-limit"] == "100;w=21600"
    assert first.headers["ratelimit-remaining"] == "99;w=21600"
    assert head.headers["ratelimit-remaining"] == "99;w=21600"
    assert second.headers["ratelimit-remaining"] == "98;w=21600"


def test_docker_hub_answers_429_once_the_pull_allowance_is_spent(live: Live) -> None:
    live.push_public("docker.io", "library/nginx", "1.27")
    live.standin.control.configure(dockerhub_pull_limit=1)
    token = live.public_token("docker.io", "repository:library/nginx:pull")
    url = f"{live.public_url('docker.io')}/v2/library/nginx/manifests/1.27"
    headers = {"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT}

    allowed = live.session.get(url, headers=headers)
    limited = live.session.get(url, headers=headers)

    assert allowed.status_code == 200
    assert limited.status_code == 429
    assert limited.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert limited.headers["ratelimit-remaining"] == "0;w=21600"


def test_docker_hub_checks_basic_credentials_sent_for_a_token(live: Live) -> None:
    known = live.config["dockerhub_credentials"]
    url = f"{live.public_url('docker.io')}/token"
    params = {
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }

    accepted = live.session.get(
        url, params=params, auth=(known["username"], known["password"])
    )
    refused = live.session.get(url, params=params, auth=(known["username"], "wrong"))
    anonymous = live.session.get(url, params=params)

    assert accepted.status_code == 200
    assert claims_of(accepted.json()["token"])["sub"] == known["username"]
    assert refused.status_code == 401
    assert anonymous.status_code == 200


def test_a_public_token_request_honours_several_scopes(live: Live) -> None:
    token = live.public_token(
        "quay.io",
        "repository:jetstack/cert-manager-controller:pull",
        "repository:jetstack/cert-manager-webhook:pull,push",
    )

    names = sorted(entry["name"] for entry in claims_of(token)["access"])
    actions = {tuple(entry["actions"]) for entry in claims_of(token)["access"]}

    assert names == [
        "jetstack/cert-manager-controller",
        "jetstack/cert-manager-webhook",
    ]
    assert actions == {("pull",)}


def test_an_expired_public_token_answers_401(live: Live) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    signer = TokenSigner.from_secret(
        live.config["identity"]["header_secret"], clock=lambda: time.time() - 7200
    )
    access = [{"type": "repository", "name": repository, "actions": ["pull"]}]
    token = signer.mint(
        {"aud": host, "grant_type": "registry_token", "access": access}, 60
    )

    response = live.session.head(
        f"{live.public_url(host)}/v2/{repository}/manifests/{tag}",
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# Control API and faults


def test_stats_count_requests_by_kind_and_reset(live: Live) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    live.session.head(f"{live.public_url(host)}/v2/{repository}/manifests/{tag}")
    live.session.get(f"{live.acr_url}/v2/")
    counted = live.standin.control.stats()

    live.standin.control.reset_stats()

    assert counted["public"][host]["manifest_head"] == 1
    assert counted["acr"]["other"] == 1
    assert live.standin.control.stats()["public"][host]["manifest_head"] == 0


@pytest.mark.parametrize(
    ("values", "rule"),
    [
        ({"latency": 5}, "unknown tunables are refused"),
        ({"latency_ms": -1}, "latency is not negative"),
        ({"poll_after_ms": 0}, "a zero delay would make azure-core wait 30 s"),
        ({"max_concurrent_imports": "ten"}, "counts are integers"),
    ],
)
def test_the_config_endpoint_refuses_bad_tunables(
    live: Live, values: dict[str, Any], rule: str
) -> None:
    response = live.session.post(f"{live.arm_url}/_standin/config", json=values)

    assert response.status_code == 400, rule
    assert live.standin.control.tunables()["latency_ms"] == 0


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ({"surface": "nowhere", "status": 500}, "surface must be"),
        ({"surface": "acr", "status": 200}, "status must be an HTTP error status"),
        ({"surface": "acr", "status": 500, "close": True}, "at most one effect"),
        (
            {"surface": "acr", "import_status": "Running"},
            "applies to surface arm-import only",
        ),
        (
            {"surface": "arm-import", "import_status": "Done"},
            "import_status must be one of",
        ),
        (
            {
                "surface": "acr",
                "status": 429,
                "retry_after": {"seconds": 1, "form": "fortnight"},
            },
            "retry_after.form",
        ),
        (
            {"surface": "acr", "times": 0, "status": 500},
            "times must be an integer >= 1",
        ),
        ({"surface": "acr", "colour": "red"}, "unknown fields"),
    ],
)
def test_a_fault_rule_that_breaks_the_schema_is_refused_naming_the_rule(
    live: Live, rule: dict[str, Any], words: str
) -> None:
    response = live.session.post(
        f"{live.arm_url}/_standin/faults",
        json={"rules": [{"surface": "acr", "latency_ms": 1}, rule]},
    )

    assert response.status_code == 400
    assert "rule 1" in response.json()["error"]
    assert words in response.json()["error"]


def test_a_latency_rule_slows_the_matching_request(live: Live) -> None:
    live.standin.control.set_faults(
        [{"surface": "acr", "kind": "other", "latency_ms": 300, "times": 1}]
    )

    started = time.monotonic()
    slow = live.session.get(f"{live.acr_url}/v2/")
    middle = time.monotonic()
    fast = live.session.get(f"{live.acr_url}/v2/")
    ended = time.monotonic()

    assert slow.status_code == fast.status_code == 401
    assert middle - started >= 0.3
    assert ended - middle < 0.3


@pytest.mark.parametrize("form", ["seconds", "http-date", "unix", None])
def test_a_429_rule_sends_retry_after_in_the_form_asked(
    live: Live, form: str | None
) -> None:
    rule: dict[str, Any] = {
        "surface": "public:docker.io",
        "kind": "manifest_get",
        "status": 429,
    }
    if form:
        rule["retry_after"] = {"seconds": 30, "form": form}
    live.standin.control.set_faults([rule])

    response = live.session.get(
        f"{live.public_url('docker.io')}/v2/library/alpine/manifests/1"
    )

    assert response.status_code == 429
    assert response.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    value = response.headers.get("Retry-After")
    if form == "seconds":
        assert value == "30"
    elif form == "http-date":
        assert value is not None
        assert 20 < parsedate_to_datetime(value).timestamp() - time.time() <= 31
    elif form == "unix":
        assert value is not None
        assert 20 < int(value) - time.time() <= 31
    else:
        assert value is None


def test_a_5xx_rule_on_import_fails_the_sdk_call_with_that_status(live: Live) -> None:
    live.standin.control.set_faults([{"surface": "arm-import", "status": 503}])
    client = live.arm_client(live.credential(), retry_total=0)

    with pytest.raises(HttpResponseError) as failed:
        live.begin_import(
            client,
            {
                "source": {"registryUri": "docker.io", "sourceImage": "a:1"},
                "targetTags": ["a:1"],
            },
        )

    assert failed.value.status_code == 503
    assert error_code(failed.value) == "ServiceUnavailable"


def test_a_403_rule_on_import_answers_authorization_failed_naming_the_import_action(
    live: Live,
) -> None:
    live.standin.control.set_faults([{"surface": "arm-import", "status": 403}])

    response = live.post_import(
        {"source": {"registryUri": "docker.io", "sourceImage": "a:1"}}
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "AuthorizationFailed"
    assert "importImage/action" in response.json()["error"]["message"]
    assert live.system_principal in response.json()["error"]["message"]


@pytest.mark.parametrize("stuck", ["Accepted", "Running"])
def test_an_import_status_rule_keeps_the_import_in_that_status(
    live: Live, stuck: str
) -> None:
    target = new_repository("stuck")
    live.standin.control.set_faults(
        [{"surface": "arm-import", "import_status": stuck, "times": 1}]
    )
    host, repository, tag = MULTI_PLATFORM_SOURCE

    response = live.post_import(
        {
            "source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"},
            "targetTags": [f"{target}:{tag}"],
        }
    )
    time.sleep(0.2)
    status = wait_for_status(
        live,
        response.headers["Azure-AsyncOperation"],
        {"Succeeded", "Failed"} | {stuck},
    )
    result = live.session.get(
        response.headers["Location"],
        headers={"Authorization": f"Bearer {live.aad_token()}"},
    )

    assert status["status"] == stuck
    assert result.status_code == 202
    assert live.standin.acr_digest(target, tag) is None
    assert live.standin.control.stats()["imports"][0]["status"] == stuck


def test_an_import_error_rule_fails_the_import_with_that_arm_code(live: Live) -> None:
    live.standin.control.set_faults(
        [
            {
                "surface": "arm-import",
                "import_error": {
                    "code": "TooManyRequests",
                    "message": "docker.io answered 429",
                },
            }
        ]
    )

    with pytest.raises(HttpResponseError) as failed:
        live.begin_import(
            live.arm_client(live.credential()),
            {
                "source": {"registryUri": "docker.io", "sourceImage": "a:1"},
                "targetTags": ["a:1"],
            },
        ).result()

    assert error_code(failed.value) == "TooManyRequests"
    assert "docker.io answered 429" in str(failed.value)


def test_a_public_429_during_an_import_fails_it_as_too_many_requests(
    live: Live,
) -> None:
    live.push_public("docker.io", "library/redis", "7")
    live.standin.control.set_faults(
        [
            {
                "surface": "public:docker.io",
                "kind": "manifest_get",
                "status": 429,
                "retry_after": {"seconds": 5, "form": "seconds"},
            }
        ]
    )

    with pytest.raises(HttpResponseError) as failed:
        live.begin_import(
            live.arm_client(live.credential()),
            {
                "source": {
                    "registryUri": "docker.io",
                    "sourceImage": "library/redis:7",
                },
                "targetTags": ["redis:7"],
            },
        ).result()

    assert error_code(failed.value) == "TooManyRequests"
    assert "Retry-After: 5" in str(failed.value)


def test_a_dangling_tag_rule_reports_success_but_leaves_the_tag_unresolved(
    live: Live,
) -> None:
    host, repository, tag = MULTI_PLATFORM_SOURCE
    target = new_repository("dangling")
    live.standin.control.set_faults([{"surface": "arm-import", "dangling_tag": True}])
    credential = live.credential()

    live.begin_import(
        live.arm_client(credential),
        {
            "source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"},
            "targetTags": [f"{target}:{tag}"],
        },
    ).result()

    assert live.standin.control.stats()["imports"][0]["status"] == "Succeeded"
    with pytest.raises(ResourceNotFoundError):
        live.acr_client(credential).get_tag_properties(target, tag)


def test_a_close_rule_drops_the_connection_without_an_answer(live: Live) -> None:
    live.standin.control.set_faults([{"surface": "acr", "close": True, "times": 1}])

    with pytest.raises(requests.ConnectionError):
        live.session.get(f"{live.acr_url}/v2/")

    assert live.session.get(f"{live.acr_url}/v2/").status_code == 401


def test_a_failing_identity_endpoint_answers_in_app_service_shape(live: Live) -> None:
    live.standin.control.set_faults(
        [{"surface": "identity", "status": 500, "times": 1}]
    )
    headers = {"X-IDENTITY-HEADER": live.config["identity"]["header_secret"]}
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}

    failed = live.session.get(live.identity_url, params=params, headers=headers)
    recovered = live.session.get(live.identity_url, params=params, headers=headers)

    assert failed.status_code == 500
    assert failed.json()["statusCode"] == 500
    assert recovered.status_code == 200


def test_an_identity_fault_makes_the_credential_fail(live: Live) -> None:
    live.standin.control.set_faults(
        [{"surface": "identity", "status": 400, "message": "identity is broken"}]
    )

    with pytest.raises(ClientAuthenticationError) as failed:
        live.credential().get_token(ARM_SCOPE)

    assert "identity is broken" in str(failed.value)


def test_a_rule_narrowed_to_a_repository_applies_its_number_of_times(
    live: Live,
) -> None:
    host = "quay.io"
    live.standin.control.set_faults(
        [
            {
                "surface": f"public:{host}",
                "kind": "token",
                "repository": "jetstack/cert-manager-webhook",
                "status": 503,
                "times": 2,
            }
        ]
    )
    url = f"{live.public_url(host)}/token"

    def ask(repository: str) -> int:
        return live.session.get(
            url, params={"service": host, "scope": f"repository:{repository}:pull"}
        ).status_code

    statuses = [ask("jetstack/cert-manager-webhook") for _ in range(3)]
    other = ask("jetstack/cert-manager-controller")

    assert statuses == [503, 503, 200]
    assert other == 200
    assert live.standin.control.faults()[0]["times_left"] == 0


def test_concurrent_imports_wait_for_a_free_slot(live: Live) -> None:
    live.standin.control.configure(max_concurrent_imports=1, import_duration_ms=200)
    host, repository, tag = MULTI_PLATFORM_SOURCE
    body = {"source": {"registryUri": host, "sourceImage": f"{repository}:{tag}"}}

    started = time.monotonic()
    responses = [
        live.post_import({**body, "targetTags": [f"{new_repository()}:{tag}"]})
        for _ in range(2)
    ]
    for response in responses:
        wait_for_status(
            live, response.headers["Azure-AsyncOperation"], {"Succeeded", "Failed"}
        )
    elapsed = time.monotonic() - started

    assert elapsed >= 0.4


# The process


def test_the_server_writes_ports_json_and_exits_cleanly_on_sigterm(
    live: Live, tmp_path: Path
) -> None:
    config = {**live.config, "state_dir": str(tmp_path)}
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "standin.server", str(config_path)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        ports_path = tmp_path / "ports.json"
        deadline = time.monotonic() + 20
        while (
            not ports_path.exists()
            and time.monotonic() < deadline
            and process.poll() is None
        ):
            time.sleep(0.05)
        ports = json.loads(ports_path.read_text(encoding="utf-8"))
        stats = live.session.get(f"https://127.0.0.1:{ports['arm']}/_standin/stats")

        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert ports["pid"] == process.pid
    assert set(ports) == {"pid", "identity", "arm", "acr", "public"}
    assert set(ports["public"]) == set(live.config["public_registries"])
    assert stats.status_code == 200
    assert returncode == 0
    assert not ports_path.exists()


def test_the_server_refuses_a_config_without_a_required_key(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"state_dir": str(tmp_path)}), encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "standin.server", str(config_path)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 1
    assert "identity" in result.stderr
