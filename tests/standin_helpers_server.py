"""What the stand-in server's tests share: clients pointed at it, tokens, images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from azure.containerregistry import ContainerRegistryClient
from azure.core.polling import LROPoller
from azure.identity import ManagedIdentityCredential
from azure.mgmt.containerregistry import ContainerRegistryManagementClient

from standin.harness import Standin
from standin.images import (
    SINGLE_PLATFORM,
    Content,
    Digest,
    Image,
    Platform,
    build_image,
    push_image,
    registry_session,
)
from standin.tokens import TokenSigner

ARM_SCOPE = "https://management.azure.com/.default"
ACR_AUDIENCE = "https://containerregistry.azure.net"
ARM_AUDIENCE = "https://management.azure.com"
TOKEN_USER = "00000000-0000-0000-0000-000000000000"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join(
    (
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        OCI_MANIFEST,
        DOCKER_MANIFEST,
    )
)
# The multi-platform image the harness seeds from the example list.
MULTI_PLATFORM_SOURCE = ("registry.k8s.io", "ingress-nginx/controller", "v1.11.1")


@dataclass
class Live:
    """The shared stand-in, with what a test needs to talk to it."""

    standin: Standin
    session: requests.Session

    @property
    def config(self) -> Mapping[str, Any]:
        return self.standin.config

    @property
    def ca(self) -> str:
        return str(self.standin.ca_cert)

    @property
    def arm_url(self) -> str:
        return f"https://127.0.0.1:{self.standin.ports.arm}"

    @property
    def acr_url(self) -> str:
        return f"https://127.0.0.1:{self.standin.ports.acr}"

    @property
    def login_server(self) -> str:
        return f"127.0.0.1:{self.standin.ports.acr}"

    @property
    def identity_url(self) -> str:
        return f"http://127.0.0.1:{self.standin.ports.identity}/msi/token"

    @property
    def registry_path(self) -> str:
        return (
            f"/subscriptions/{self.config['subscription_id']}"
            f"/resourceGroups/{self.config['resource_group']}"
            f"/providers/Microsoft.ContainerRegistry/registries/"
            f"{self.config['registry_name']}"
        )

    @property
    def system_principal(self) -> str:
        return str(self.config["identity"]["system_assigned"]["principal_id"])

    def public_url(self, host: str) -> str:
        return f"https://127.0.0.1:{self.standin.ports.public[host]}"

    def signer(self) -> TokenSigner:
        return TokenSigner.from_secret(self.config["identity"]["header_secret"])

    def aad_token(
        self,
        *,
        audience: str = ARM_AUDIENCE,
        principal: str | None = None,
        ttl: float = 600,
    ) -> str:
        """A token as the identity endpoint would mint it, for any principal."""
        oid = principal or self.system_principal
        claims = {"aud": audience, "tid": self.config["tenant_id"], "oid": oid}
        return self.signer().mint(claims, ttl)

    def credential(self, client_id: str | None = None) -> ManagedIdentityCredential:
        return ManagedIdentityCredential(client_id=client_id)

    def arm_client(
        self, credential: ManagedIdentityCredential, **options: Any
    ) -> ContainerRegistryManagementClient:
        return ContainerRegistryManagementClient(
            credential,
            self.config["subscription_id"],
            base_url=self.arm_url,
            credential_scopes=[ARM_SCOPE],
            connection_verify=self.ca,
            **options,
        )

    def acr_client(
        self, credential: ManagedIdentityCredential, **options: Any
    ) -> ContainerRegistryClient:
        return ContainerRegistryClient(
            self.acr_url,
            credential,
            audience=ACR_AUDIENCE,
            connection_verify=self.ca,
            **options,
        )

    def begin_import(
        self, client: ContainerRegistryManagementClient, body: Mapping[str, Any]
    ) -> LROPoller[None]:
        return client.registries.begin_import_image(
            self.config["resource_group"], self.config["registry_name"], dict(body)
        )

    def post_import(
        self, body: Any, *, token: str | None = None, registry: str | None = None
    ) -> requests.Response:
        """The import POST by hand, for what the SDK would not send."""
        path = self.registry_path
        if registry is not None:
            path = path.rsplit("/", 1)[0] + f"/{registry}"
        headers = {"Authorization": f"Bearer {token or self.aad_token()}"}
        return self.session.post(
            f"{self.arm_url}{path}/importImage",
            params={"api-version": "2025-11-01"},
            json=body,
            headers=headers,
        )

    def refresh_token(self) -> str:
        """An ACR refresh token for the system identity, by the exchange."""
        response = self.session.post(
            f"{self.acr_url}/oauth2/exchange",
            data={
                "grant_type": "access_token",
                "service": self.login_server,
                "access_token": self.aad_token(audience=ACR_AUDIENCE),
            },
        )
        response.raise_for_status()
        return str(response.json()["refresh_token"])

    def acr_access_token(self, *scopes: str) -> str:
        response = self.session.post(
            f"{self.acr_url}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "service": self.login_server,
                "scope": list(scopes),
                "refresh_token": self.refresh_token(),
            },
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def public_token(self, host: str, *scopes: str, auth: Any = None) -> str:
        service = "registry.docker.io" if host == "docker.io" else host
        response = self.session.get(
            f"{self.public_url(host)}/token",
            params={"service": service, "scope": list(scopes)},
            auth=auth,
        )
        response.raise_for_status()
        return str(response.json()["token"])

    def push_public(
        self,
        host: str,
        repository: str,
        tag: str,
        platforms: Sequence[Platform] = SINGLE_PLATFORM,
    ) -> Digest:
        """Pushes a fresh image into a public registry; returns its digest."""
        image = build_image(f"{host}/{repository}:{tag} {uuid.uuid4()}", platforms)
        with registry_session() as session:
            return push_image(
                session,
                self.standin.public_backend,
                f"{host}/{repository}",
                tag,
                image,
            )

    def push_public_index(
        self, host: str, repository: str, tag: str, children: int
    ) -> Digest:
        """Pushes an index over that many manifests, all sharing one layer."""
        base = build_image(f"{host}/{repository}:{tag} {uuid.uuid4()}")
        manifest = json.loads(base.top.data)
        manifests = [
            Content(
                OCI_MANIFEST,
                json.dumps(
                    {**manifest, "annotations": {"standin.child": str(number)}}
                ).encode(),
            )
            for number in range(children)
        ]
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                child.descriptor(
                    platform={"os": "linux", "architecture": f"arch{number}"}
                )
                for number, child in enumerate(manifests)
            ],
        }
        image = Image(
            base.blobs, (*manifests, Content(OCI_INDEX, json.dumps(index).encode()))
        )
        with registry_session() as session:
            return push_image(
                session, self.standin.public_backend, f"{host}/{repository}", tag, image
            )

    def manifest_bytes(self, base_url: str, repository: str, reference: str) -> bytes:
        """A manifest's bytes from a backend, as stored."""
        with registry_session() as session:
            response = session.get(
                f"{base_url}/v2/{repository}/manifests/{reference}",
                headers={"Accept": MANIFEST_ACCEPT},
            )
        response.raise_for_status()
        return response.content


def new_repository(prefix: str = "test") -> str:
    """A repository name no other test uses."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


def skopeo_inspect_raw(
    reference: str, ca: str, work: Path, credentials: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``skopeo inspect --raw`` with the stand-in's CA and nothing else trusted."""
    certs = work / "certs"
    certs.mkdir(exist_ok=True)
    shutil.copy(ca, certs / "ca.crt")
    command = ["skopeo", "inspect", "--raw", "--cert-dir", str(certs)]
    if credentials:
        command += ["--creds", credentials]
    return subprocess.run(
        [*command, f"docker://{reference}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # No login a user made elsewhere may leak into the test.
        env={
            **os.environ,
            "HOME": str(work),
            "REGISTRY_AUTH_FILE": str(work / "auth.json"),
        },
    )
