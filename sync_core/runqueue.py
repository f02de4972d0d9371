"""The queue that carries a run started over HTTP to the function that carries it out.

``POST /api/sync`` answers within seconds; the run itself travels as one message on
the ``sync-runs`` queue of the storage connection (``ACRSYNC_STORAGE`` unless
``ACRSYNC_STORAGE_CONNECTION`` names another), and a queue-triggered function does
the work under the function timeout, far from the HTTP front end's 230-second cut.

The Functions host decodes queue messages as base64 unless host.json says otherwise
("Azure Queue storage trigger", host.json ``extensions.queues.messageEncoding``), so
messages go out base64-encoded. After ``maxDequeueCount`` failed deliveries (5 by
default) the host moves a message to ``<queue>-poison``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sync_core.errors import ConfigurationError, SyncError
from sync_core.settings import DEFAULT_STORAGE_CONNECTION, PREFIX, StorageSettings

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

RUN_QUEUE: Final = "sync-runs"
POISON_QUEUE: Final = f"{RUN_QUEUE}-poison"

# Run ids name blobs (``runs/<run_id>.json``); nothing but these characters may.
RUN_ID: Final = re.compile(r"[0-9A-Za-z_-]{1,64}")


class InvalidRunMessage(SyncError):  # noqa: N818 - named for the thing, as packaging does
    """A queue message that does not name a run to carry out."""


@dataclass(frozen=True, slots=True)
class RunMessage:
    """A run announced over HTTP: its id, and whether it only plans."""

    run_id: str
    dry_run: bool

    def to_json(self) -> str:
        return json.dumps({"run_id": self.run_id, "dryRun": self.dry_run})

    @classmethod
    def from_json(cls, body: str | bytes) -> RunMessage:
        """Reads a message; raises InvalidRunMessage naming what is wrong."""
        try:
            document = json.loads(body)
        except ValueError as error:
            raise InvalidRunMessage(
                f"a run message is a JSON object: {_shown(body)}"
            ) from error
        if not isinstance(document, dict):
            raise InvalidRunMessage(f"a run message is a JSON object: {_shown(body)}")
        run_id = document.get("run_id")
        dry_run = document.get("dryRun", False)
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise InvalidRunMessage(
                f"a run message names a run id of letters, digits, '_' and '-': "
                f"{_shown(body)}"
            )
        if not isinstance(dry_run, bool):
            raise InvalidRunMessage(
                f"a run message's dryRun is true or false: {_shown(body)}"
            )
        return cls(run_id=run_id, dry_run=dry_run)


def connection_name(environ: Mapping[str, str]) -> str:
    """The storage connection's setting prefix, as the queue trigger names it."""
    configured = environ.get(f"{PREFIX}STORAGE_CONNECTION", "").strip()
    return configured or DEFAULT_STORAGE_CONNECTION


def enqueue_run(
    storage: StorageSettings, message: RunMessage, *, connection: str
) -> None:
    """Puts the run on the queue, creating the queue on first use."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    with run_queue(storage, connection=connection) as queue:
        try:
            queue.send_message(message.to_json())
        except ResourceNotFoundError:
            with suppress(ResourceExistsError):
                queue.create_queue()
            queue.send_message(message.to_json())


def run_queue(
    storage: StorageSettings, *, connection: str, name: str = RUN_QUEUE
) -> QueueClient:
    """A client for the run queue that encodes messages as the host decodes them."""
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    encoding = TextBase64EncodePolicy()
    if storage.connection_string is not None:
        return QueueClient.from_connection_string(
            storage.connection_string, name, message_encode_policy=encoding
        )
    if storage.queue_service_uri is None:
        raise ConfigurationError(
            f"{connection}__queueServiceUri",
            "an identity-based storage connection needs the queue service URI for "
            "runs started over HTTP",
        )
    from azure.identity import ManagedIdentityCredential

    credential = (
        ManagedIdentityCredential(client_id=storage.client_id)
        if storage.client_id
        else ManagedIdentityCredential()
    )
    return QueueClient(
        storage.queue_service_uri,
        name,
        credential=credential,
        message_encode_policy=encoding,
    )


_SHOWN_LENGTH = 200


def _shown(body: str | bytes) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return repr(text[:_SHOWN_LENGTH])
