"""Reading the published image list from blob storage.

Locally the connection is an Azurite connection string. In Azure it is
identity-based, the way the Functions host reads a connection: the app settings
``<NAME>__blobServiceUri`` with ``<NAME>__credential=managedidentity`` and, for a
user-assigned identity, ``<NAME>__clientId``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
)

from sync_core.errors import SyncError
from sync_core.settings import StorageSettings

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient


class ListUnavailableError(SyncError):
    """The image list blob could not be read."""


def blob_service(storage: StorageSettings) -> BlobServiceClient:
    """A blob service client for the configured connection."""
    from azure.storage.blob import BlobServiceClient

    if storage.connection_string is not None:
        return BlobServiceClient.from_connection_string(storage.connection_string)
    from azure.identity import ManagedIdentityCredential

    credential = (
        ManagedIdentityCredential(client_id=storage.client_id)
        if storage.client_id
        else ManagedIdentityCredential()
    )
    assert storage.blob_service_uri is not None, "settings require one or the other"
    return BlobServiceClient(storage.blob_service_uri, credential=credential)


def read_image_list(storage: StorageSettings, *, max_bytes: int) -> bytes:
    """The list's bytes; reads at most ``max_bytes + 1`` so the parser can refuse."""
    location = f"{storage.container}/{storage.blob}"
    try:
        with blob_service(storage) as service:
            blob = service.get_blob_client(storage.container, storage.blob)
            return blob.download_blob(offset=0, length=max_bytes + 1).readall()
    except ResourceNotFoundError as error:
        raise ListUnavailableError(
            f"the image list must be published before a run: no blob {location}"
        ) from error
    except HttpResponseError as error:
        if getattr(error, "error_code", None) == "InvalidRange":
            # A ranged read of an empty blob answers 416: the list is empty.
            return b""
        raise ListUnavailableError(
            f"the image list could not be read: {location} ({error.message})"
        ) from error
    except AzureError as error:
        raise ListUnavailableError(
            f"the image list could not be read: {location} ({error.message})"
        ) from error
