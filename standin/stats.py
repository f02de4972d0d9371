"""What the stand-in has seen: requests counted by surface and kind, and imports.

Each request is labelled before it is answered (``RequestLabel``); the same label
is what fault rules match. Counts are kept per group: ``identity``, ``arm``,
``acr``, and one per public registry under ``public``. A request is counted
whatever its answer, a 401 challenge included, because the number of round trips
a client makes is itself a figure worth measuring.

An ACR import pulls its source from the public registry as any client does, and
the public registry counts those pulls (Docker Hub charges a manifest GET to the
rate limit whoever sends it). They are counted under ``public`` with the rest and
once more under ``via_import``, so a benchmark can tell the app's own requests
from those its imports caused. The import's requests name themselves with
``IMPORT_USER_AGENT``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PUBLIC_PREFIX = "public:"
IMPORT_USER_AGENT = "acr-import (stand-in)"

# Kinds listed up front so a snapshot always has the same shape.
_KNOWN_KINDS: Mapping[str, tuple[str, ...]] = {
    "identity": ("token",),
    "arm": ("import", "poll", "other"),
    "acr": (
        "exchange",
        "token",
        "manifest_head",
        "manifest_get",
        "blob_get",
        "acr_api",
        "other",
    ),
    "public": ("token", "manifest_head", "manifest_get", "blob_get", "other"),
}


@dataclass(frozen=True, slots=True)
class RequestLabel:
    """What a request is: where it arrived, what kind it is, which repositories.

    ``surface`` is ``identity``, ``arm-import``, ``arm-poll``, ``arm``, ``acr`` or
    ``public:<host>``; ``kind`` is one of the counted kinds.
    """

    surface: str
    kind: str
    repositories: frozenset[str] = field(default_factory=frozenset)

    @property
    def group(self) -> str:
        if self.surface.startswith(PUBLIC_PREFIX):
            return "public"
        return self.surface.split("-", 1)[0]


class Stats:
    """Thread-safe request counts and the list of imports, resettable."""

    def __init__(self, public_registries: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._public_registries = public_registries
        self._counts: dict[str, dict[str, int]] = {}
        self._public: dict[str, dict[str, int]] = {}
        self._via_import: dict[str, dict[str, int]] = {}
        self._imports: dict[str, dict[str, Any]] = {}
        self._since = _now()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts = {
                group: dict.fromkeys(kinds, 0)
                for group, kinds in _KNOWN_KINDS.items()
                if group != "public"
            }
            self._public = {
                host: dict.fromkeys(_KNOWN_KINDS["public"], 0)
                for host in self._public_registries
            }
            self._via_import = {
                host: dict.fromkeys(_KNOWN_KINDS["public"], 0)
                for host in self._public_registries
            }
            self._imports = {}
            self._since = _now()

    def count(self, label: RequestLabel, *, via_import: bool = False) -> None:
        """Counts one request; ``via_import`` when an ACR import sent it."""
        with self._lock:
            if label.group == "public":
                host = label.surface.removeprefix(PUBLIC_PREFIX)
                tables = [self._public]
                if via_import:
                    tables.append(self._via_import)
                for table in tables:
                    counts = table.setdefault(host, {})
                    counts[label.kind] = counts.get(label.kind, 0) + 1
            else:
                counts = self._counts.setdefault(label.group, {})
                counts[label.kind] = counts.get(label.kind, 0) + 1

    def import_started(self, operation_id: str, details: Mapping[str, Any]) -> None:
        """Records an import as ARM accepted it; ``details`` holds its request."""
        with self._lock:
            self._imports[operation_id] = {
                "id": operation_id,
                **details,
                "status": "InProgress",
                "digest": None,
                "error": None,
                "started": _now(),
                "finished": None,
            }

    def import_updated(
        self,
        operation_id: str,
        status: str,
        *,
        digest: str | None = None,
        error: Mapping[str, str] | None = None,
    ) -> None:
        """Updates an import's status; an import from before a reset is ignored."""
        with self._lock:
            record = self._imports.get(operation_id)
            if record is None:
                return
            record["status"] = status
            if digest is not None:
                record["digest"] = digest
            if error is not None:
                record["error"] = dict(error)
            if status in {"Succeeded", "Failed", "Canceled"}:
                record["finished"] = _now()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "since": self._since,
                **{group: dict(counts) for group, counts in self._counts.items()},
                "public": {host: dict(counts) for host, counts in self._public.items()},
                "via_import": {
                    host: dict(counts) for host, counts in self._via_import.items()
                },
                "imports": [dict(record) for record in self._imports.values()],
            }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
