"""The Microsoft Entra credential a run acts as.

In Azure the app runs as its managed identity: system-assigned, or user-assigned when
``ACRSYNC_MANAGED_IDENTITY_CLIENT_ID`` names one. Elsewhere ``DefaultAzureCredential``
tries the usual developer sign-ins (environment, workload identity, Azure CLI...).
azure-identity is imported when a credential is first made, to keep cold starts short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from sync_core.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

# App Service and Functions put the managed identity endpoint in these variables.
_MANAGED_IDENTITY_VARIABLES = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT")


def build_credential(settings: Settings, environ: Mapping[str, str]) -> TokenCredential:
    """The managed identity where the platform offers one, else the default chain."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = settings.managed_identity_client_id
    if any(environ.get(name) for name in _MANAGED_IDENTITY_VARIABLES):
        if client_id is None:
            return ManagedIdentityCredential()
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential(managed_identity_client_id=client_id)
