"""The image list and the run reports, in blob storage.

Locally the connection is an Azurite connection string. In Azure it is
identity-based, the way the Functions host reads a connection: the app settings
``<NAME>__blobServiceUri`` with ``<NAME>__credential=managedidentity`` and, for a
user-assigned identity, ``<NAME>__clientId``.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from sync_core.errors import SyncError
from sync_core.report import RunReport
from sync_core.settings import StorageSettings

LATEST_REPORT = "latest.json"

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


def report_blob_name(run_id: str) -> str:
    return f"runs/{run_id}.json"


def save_report(storage: StorageSettings, report: RunReport) -> None:
    """Keeps the report under its run id, and as the latest under a fixed name."""
    from azure.storage.blob import ContentSettings

    body = report.to_json().encode()
    content = ContentSettings(content_type="application/json")
    with blob_service(storage) as service:
        container = service.get_container_client(storage.report_container)
        if not container.exists():
            # Another run may create it between the check and the call.
            with suppress(ResourceExistsError):
                container.create_container()
        for name in (report_blob_name(report.run_id), LATEST_REPORT):
            container.upload_blob(name, body, overwrite=True, content_settings=content)


def load_report(storage: StorageSettings, name: str = LATEST_REPORT) -> bytes | None:
    """A stored report's JSON, or None when there is none under that name."""
    with blob_service(storage) as service:
        blob = service.get_blob_client(storage.report_container, name)
        try:
            return blob.download_blob().readall()
        except ResourceNotFoundError:
            return None
