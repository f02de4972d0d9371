"""The Azure Container Registry side: what its tags point at, and importing into it.

Reads go over the registry's data plane with the identity's exchanged tokens. Imports
go through Azure Resource Manager (``registries.begin_import_image``): ACR copies the
image server-side, so no image bytes pass through this app. An import always names
the source by digest, so ACR copies exactly the manifest that was compared, even when
the upstream tag moves while the import runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
)
from azure.mgmt.core.polling.arm_polling import ARMPolling

from sync_core.distribution import DistributionClient
from sync_core.errors import (
    FatalRunError,
    ImportFailedError,
    ImportTimedOutError,
    RateLimitedError,
    Reach,
    SyncError,
)
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
        self._http = HttpClient(f"https://{settings.login_server}", options)
        self._tokens = AcrTokenSource(
            options,
            login_server=settings.login_server,
            credential=credential,
            audience=settings.acr_audience,
            shared=self._http,
        )
        self.client = DistributionClient(
            self._http, self._tokens, name=settings.login_server
        )

    def prepare(self) -> None:
        """Learns the registry's challenge and gets a refresh token, before reads."""
        self._tokens.prepare(self.client.learn_challenge())

    def current_digest(self, target: TargetReference, digest: Digest) -> Digest | None:
        """What the target tag points at; for an untagged target, whether it exists."""
        reference = target.tag if target.tag is not None else digest
        return self.client.manifest_digest(target.repository, reference)

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
        self,
        source: ImageReference,
        digest: Digest,
        target: TargetReference,
        *,
        deadline: float,
        accepted: Callable[[], None] | None = None,
    ) -> None:
        """Imports ``source@digest`` as the target, giving up at ``deadline``.

        ``deadline`` is on the ``time.monotonic`` clock; ``accepted`` is called once
        ARM has accepted the import and it runs in ACR. Raises ImportFailedError,
        RateLimitedError when the source registry rate limited ACR, or FatalRunError
        when the identity may not import at all.
        """
        parameters = self._parameters(source, digest, target)
        polling = _DeadlinePolling(
            deadline,
            timeout=self._settings.poll_interval_seconds,
            path_format_arguments={"endpoint": self._settings.arm_endpoint},
        )
        try:
            poller = self._client.registries.begin_import_image(
                self._settings.resource_group,
                self._settings.registry_name,
                parameters,
                polling=polling,
            )
            if accepted is not None:
                accepted()
            poller.wait()
        except ImportTimedOutError:
            raise
        except ClientAuthenticationError as error:
            raise _identity_failure(self._settings, error) from error
        except HttpResponseError as error:
            raise _classify(self._settings, source, error) from error
        except AzureError as error:
            raise ImportFailedError(
                f"the import could not be started or followed: {error.message}",
                reach=Reach.TEMPORARY,
            ) from error

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


class _DeadlinePolling(ARMPolling):
    """azure-mgmt-core's ARM polling, which gives up when the deadline passes.

    Imports have been seen to stay Accepted or Running for hours; past its deadline
    an import is reported as timed out and no longer polled.
    """

    def __init__(self, deadline: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._deadline = deadline

    def _delay(self) -> None:
        if time.monotonic() >= self._deadline:
            raise ImportTimedOutError(
                f"the import did not finish by its deadline and may still complete "
                f"in ACR; it was last {self.status()}",
                code="ImportTimedOut",
            )
        super()._delay()

    def _sleep(self, delay: float) -> None:
        super()._sleep(max(0.0, min(delay, self._deadline - time.monotonic())))


# Words that ACR's import error carries when the source registry rate limited it.
_RATE_LIMIT_MARKERS = ("toomanyrequests", "too many requests", "429", "rate limit")
_IMPORTER_ROLE = "Container Registry Data Importer and Data Reader"


def _classify(
    settings: Settings, source: ImageReference, error: HttpResponseError
) -> SyncError:
    """Maps ARM's answer to how far the failure reaches."""
    code = error.error.code if error.error is not None else None
    detail = _first_line(error.message)
    status = error.status_code
    if status == 403 or code == "AuthorizationFailed":
        return FatalRunError(
            f"the app's identity needs the role '{_IMPORTER_ROLE}' on registry "
            f"{settings.registry_name} (resource group {settings.resource_group}) "
            f"to import; ARM refused with {code or 'HTTP 403'}: {detail}",
            reason="not-authorized",
        )
    if status == 401:
        return FatalRunError(
            f"Resource Manager must accept the app's token; check "
            f"ACRSYNC_ARM_ENDPOINT and ACRSYNC_ARM_AUDIENCE: {detail}",
            reason="not-authenticated",
        )
    if status == 404 and code in ("ResourceNotFound", "ResourceGroupNotFound"):
        return FatalRunError(
            f"the registry must exist: {settings.registry_name} in resource group "
            f"{settings.resource_group} of subscription {settings.subscription_id} "
            f"(ACRSYNC_REGISTRY_NAME, ACRSYNC_RESOURCE_GROUP, "
            f"ACRSYNC_SUBSCRIPTION_ID): {detail}",
            reason="registry-not-found",
        )
    if status == 429:
        return ImportFailedError(
            f"Resource Manager kept throttling the app's import requests (HTTP 429, "
            f"{code or 'no code'}): {detail}",
            code=code,
            reach=Reach.TEMPORARY,
        )
    words = f"{code or ''} {detail}".lower()
    if any(marker in words for marker in _RATE_LIMIT_MARKERS):
        return RateLimitedError(
            f"ACR's import was rate limited by {source.registry}: {detail}",
            registry=source.registry,
        )
    reach = Reach.TEMPORARY if status is None or status >= 500 else Reach.PERMANENT
    return ImportFailedError(
        f"ACR refused or failed the import with {code or f'HTTP {status}'}: {detail}",
        code=code,
        reach=reach,
    )


def _identity_failure(
    settings: Settings, error: ClientAuthenticationError
) -> FatalRunError:
    identity = settings.managed_identity_client_id or "system-assigned"
    return FatalRunError(
        f"the managed identity ({identity}) must give the app a token for Resource "
        f"Manager; check ACRSYNC_MANAGED_IDENTITY_CLIENT_ID: "
        f"{_first_line(error.message)}",
        reason="identity-unavailable",
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"
