"""The Azure Container Registry side: what its tags point at, and importing into it.

Reads go over the registry's data plane with the identity's exchanged tokens. Imports
go through Azure Resource Manager (``registries.begin_import_image``): ACR copies the
image server-side, so no image bytes pass through this app. An import always names
the source by digest, so ACR copies exactly the manifest that was compared, even when
the upstream tag moves while the import runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, HttpResponseError

from sync_core.distribution import DistributionClient
from sync_core.errors import ImportFailedError
from sync_core.http import HttpClient, HttpOptions
from sync_core.reference import (
    Digest,
    ImageReference,
    TargetReference,
    is_docker_hub,
)
from sync_core.settings import Settings
from sync_core.tokens import AcrTokenSource

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


class TargetRegistry:
    """Digest lookups in this registry, over its data plane."""

    def __init__(
        self, settings: Settings, credential: TokenCredential, options: HttpOptions
    ) -> None:
        self.login_server = settings.login_server
        self._tokens = AcrTokenSource(
            options,
            login_server=settings.login_server,
            credential=credential,
            audience=settings.acr_audience,
        )
        self._http = HttpClient(f"https://{settings.login_server}", options)
        self._client = DistributionClient(
            self._http, self._tokens, name=settings.login_server
        )

    def authorize(self, repositories: list[str]) -> None:
        """Gets pull tokens for the repositories a run will read, in few requests."""
        self._client.authorize(repositories)

    def current_digest(self, target: TargetReference, digest: Digest) -> Digest | None:
        """What the target tag points at; for an untagged target, whether it exists."""
        reference = target.tag if target.tag is not None else digest
        return self._client.manifest_digest(target.repository, reference)

    def close(self) -> None:
        self._http.close()
        self._tokens.close()


class Importer:
    """Starts ACR imports through Azure Resource Manager and waits for each."""

    def __init__(
        self, settings: Settings, credential: TokenCredential, options: HttpOptions
    ) -> None:
        from azure.mgmt.containerregistry import ContainerRegistryManagementClient

        self._settings = settings
        self._client = ContainerRegistryManagementClient(
            credential,
            settings.subscription_id,
            base_url=settings.arm_endpoint,
            credential_scopes=[settings.arm_audience + "/.default"],
            retry_policy=options.retry_policy(),
            polling_interval=settings.poll_interval_seconds,
            connection_timeout=settings.request_timeout_seconds,
            read_timeout=settings.request_timeout_seconds,
        )

    def import_digest(
        self, source: ImageReference, digest: Digest, target: TargetReference
    ) -> None:
        """Imports ``source@digest`` as the target; raises ImportFailedError."""
        parameters = self._parameters(source, digest, target)
        try:
            poller = self._client.registries.begin_import_image(
                self._settings.resource_group, self._settings.registry_name, parameters
            )
            poller.wait(self._settings.import_timeout_seconds)
        except HttpResponseError as error:
            code = error.error.code if error.error is not None else None
            raise ImportFailedError(
                f"ACR refused or failed the import with "
                f"{code or f'HTTP {error.status_code}'}: {_first_line(error.message)}",
                code=code,
            ) from error
        except AzureError as error:
            raise ImportFailedError(
                f"the import could not be started or followed: {error.message}"
            ) from error
        if not poller.done():
            raise ImportFailedError(
                f"the import did not finish within "
                f"{self._settings.import_timeout_seconds:g} s and may still complete",
                code="ImportTimedOut",
            )

    def _parameters(
        self, source: ImageReference, digest: Digest, target: TargetReference
    ) -> Any:
        from azure.mgmt.containerregistry.models import (
            ImportImageParameters,
            ImportSource,
            ImportSourceCredentials,
        )

        credentials = None
        dockerhub = self._settings.dockerhub
        if dockerhub is not None and is_docker_hub(source.registry):
            credentials = ImportSourceCredentials(
                username=dockerhub.username, password=dockerhub.token
            )
        tagged = target.tag is not None
        return ImportImageParameters(
            source=ImportSource(
                registry_uri=source.registry,
                source_image=f"{source.repository}@{digest}",
                credentials=credentials,
            ),
            target_tags=[str(target)] if tagged else None,
            untagged_target_repositories=None if tagged else [target.repository],
            mode="Force",
        )

    def close(self) -> None:
        self._client.close()


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"
