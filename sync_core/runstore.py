"""Where runs leave their trace: reports in blob storage, and the one-run lock.

Reports live in the report container as ``runs/<run_id>.json`` (written when a run
starts, and again when it ends) and, for the last finished run, ``latest.json``.
One run at a time holds a lease on the ``run.lock`` blob beside them, renewed while
it works and released on every way out; the blob's metadata names the holder's run
id. A lease left by a crashed run expires on its own after ``LEASE_SECONDS``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from sync_core.errors import SyncError
from sync_core.report import RunReport
from sync_core.settings import StorageSettings
from sync_core.storage import blob_service

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient, ContainerClient

log = logging.getLogger(__name__)

LATEST_REPORT = "latest.json"
LOCK_BLOB = "run.lock"
# Blob leases last 15 to 60 seconds or forever; a finite one frees itself after a crash.
LEASE_SECONDS = 60
_RENEW_EVERY_SECONDS = LEASE_SECONDS / 3
# A new holder writes its run id right after taking the lease.
_HOLDER_READS = 10
_HOLDER_READ_PAUSE_SECONDS = 0.1


class AlreadyRunningError(SyncError):
    """Another run holds the lock."""

    def __init__(self, run_id: str | None) -> None:
        holder = run_id or "unknown"
        super().__init__(f"only one run at a time: run {holder} is already running")
        self.run_id = run_id


def report_blob_name(run_id: str) -> str:
    return f"runs/{run_id}.json"


class RunStore:
    """Reports and the lock, in the report container."""

    def __init__(self, storage: StorageSettings) -> None:
        self._storage = storage
        self._service: BlobServiceClient = blob_service(storage)
        self._container: ContainerClient = self._service.get_container_client(
            storage.report_container
        )
        self._container_ready = False

    def save(self, report: RunReport, *, latest: bool) -> None:
        """Keeps the report under its run id, and as the latest when it is final."""
        from azure.storage.blob import ContentSettings

        self._ensure_container()
        body = report.to_json().encode()
        content = ContentSettings(content_type="application/json")
        names = [report_blob_name(report.run_id)] + ([LATEST_REPORT] if latest else [])
        for name in names:
            self._container.upload_blob(
                name, body, overwrite=True, content_settings=content
            )

    def load(self, run_id: str) -> dict[str, Any] | None:
        """A run's report, or None when there is no such run."""
        return self._load(report_blob_name(run_id))

    def latest(self) -> dict[str, Any] | None:
        """The last finished run's report, or None before the first run."""
        return self._load(LATEST_REPORT)

    def lock(self, run_id: str) -> RunLock:
        """The one-run lock, to hold with ``with``."""
        self._ensure_container()
        return RunLock(self._container, run_id)

    def holder(self) -> str | None:
        """The run id holding the lock now, or None when no run holds it."""
        blob = self._container.get_blob_client(LOCK_BLOB)
        try:
            properties = blob.get_blob_properties()
        except ResourceNotFoundError:
            return None
        if properties.lease.state != "leased":
            return None
        run_id = properties.metadata.get("run_id")
        return str(run_id) if run_id else None

    def close(self) -> None:
        self._service.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _load(self, name: str) -> dict[str, Any] | None:
        blob = self._container.get_blob_client(name)
        try:
            document = json.loads(blob.download_blob().readall())
        except ResourceNotFoundError:
            return None
        return document if isinstance(document, dict) else None

    def _ensure_container(self) -> None:
        if self._container_ready:
            return
        # Another run may create it between the check and the call.
        if not self._container.exists():
            with suppress(ResourceExistsError):
                self._container.create_container()
        self._container_ready = True


class RunLock:
    """A lease on the lock blob, renewed in the background while held."""

    def __init__(self, container: ContainerClient, run_id: str) -> None:
        self._blob = container.get_blob_client(LOCK_BLOB)
        self._run_id = run_id
        self._lease: Any = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the lease, or raises AlreadyRunningError naming the holder."""
        with suppress(ResourceExistsError):
            self._blob.upload_blob(b"", overwrite=False)
        try:
            self._lease = self._blob.acquire_lease(lease_duration=LEASE_SECONDS)
        except HttpResponseError as error:
            if error.status_code != 409:
                raise
            raise AlreadyRunningError(self._current_holder()) from error
        self._blob.set_blob_metadata({"run_id": self._run_id}, lease=self._lease)
        self._renewer = threading.Thread(
            target=self._renew, name="run-lock", daemon=True
        )
        self._renewer.start()

    def release(self) -> None:
        """Gives the lease back; a failure here only shortens nothing but the wait."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self._lease is None:
            return
        try:
            # The next holder writes its own id; until then no stale id may show.
            self._blob.set_blob_metadata({}, lease=self._lease)
            self._lease.release()
        except AzureError as error:
            log.warning(
                "run lock not released run_id=%s reason=%s", self._run_id, error.message
            )
        self._lease = None

    def _renew(self) -> None:
        while not self._stop.wait(_RENEW_EVERY_SECONDS):
            try:
                self._lease.renew()
            except AzureError as error:
                log.error(
                    "run lock not renewed run_id=%s reason=%s",
                    self._run_id,
                    error.message,
                )

    def _current_holder(self) -> str | None:
        """The holder's run id; a holder that just took the lease writes it soon."""
        for _ in range(_HOLDER_READS):
            with suppress(AzureError):
                run_id = self._blob.get_blob_properties().metadata.get("run_id")
                if run_id:
                    return str(run_id)
            time.sleep(_HOLDER_READ_PAUSE_SECONDS)
        return None
