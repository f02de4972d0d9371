"""Requests by kind, read from the stand-in's counters (``/_standin/stats``).

The stand-in counts every request it answers by surface and kind, and counts the
public requests an ACR import made once more under ``via_import``; the app's own
public requests are the difference. Storage requests (Azurite) are not the
stand-in's; the app's process counts those itself (``bench.app_run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DOCKER_HUB = "docker.io"

# The order the kinds are printed in, with what each holds.
KINDS: tuple[tuple[str, str], ...] = (
    ("source HEAD", "manifest HEADs on the public registries"),
    ("source GET", "manifest GETs on the public registries"),
    ("source token", "token requests to the public registries' token services"),
    ("source other", "other public requests: the /v2/ challenge, blobs, tags"),
    ("identity token", "managed identity token requests"),
    ("ACR token", "ACR /oauth2/exchange and /oauth2/token"),
    ("target reads", "manifest HEADs and GETs and /acr/v1 reads on ACR"),
    ("ACR other", "other ACR requests: the /v2/ challenge"),
    ("import calls", "ARM importImage POSTs"),
    ("operation polls", "ARM operationStatuses and operationResults GETs"),
    ("ARM other", "other ARM requests: registry and resource lookups"),
    ("storage", "blob and queue requests (Azurite), counted by the app"),
)


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """A run's requests by kind, and Docker Hub's pulls split by who sent them."""

    kinds: Mapping[str, int]
    dockerhub_pulls_by_app: int
    dockerhub_pulls_by_imports: int
    public_manifest_gets_by_app: int

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    def per_entry(self, entries: int) -> float:
        return self.total / entries if entries else 0.0


def _public_sum(stats: Mapping[str, Any], table: str, *kinds: str) -> int:
    return sum(
        int(counts.get(kind, 0))
        for counts in (stats.get(table) or {}).values()
        for kind in kinds
    )


def _app_public(stats: Mapping[str, Any], *kinds: str) -> int:
    """Public requests of the given kinds that the app sent, not an import."""
    return _public_sum(stats, "public", *kinds) - _public_sum(
        stats, "via_import", *kinds
    )


def classify(stats: Mapping[str, Any], storage_requests: int = 0) -> RequestCounts:
    """Sorts a stats snapshot (taken after a reset) into the printed kinds."""
    arm, acr = stats.get("arm") or {}, stats.get("acr") or {}
    identity = stats.get("identity") or {}
    kinds = {
        "source HEAD": _app_public(stats, "manifest_head"),
        "source GET": _app_public(stats, "manifest_get"),
        "source token": _app_public(stats, "token"),
        "source other": _app_public(stats, "other", "blob_get"),
        "identity token": int(identity.get("token", 0)) + int(identity.get("other", 0)),
        "ACR token": int(acr.get("exchange", 0)) + int(acr.get("token", 0)),
        "target reads": sum(
            int(acr.get(kind, 0))
            for kind in ("manifest_head", "manifest_get", "blob_get", "acr_api")
        ),
        "ACR other": int(acr.get("other", 0)),
        "import calls": int(arm.get("import", 0)),
        "operation polls": int(arm.get("poll", 0)),
        "ARM other": int(arm.get("other", 0)),
        "storage": storage_requests,
    }
    public = (stats.get("public") or {}).get(DOCKER_HUB) or {}
    via_import = (stats.get("via_import") or {}).get(DOCKER_HUB) or {}
    by_imports = int(via_import.get("manifest_get", 0))
    return RequestCounts(
        kinds=kinds,
        dockerhub_pulls_by_app=int(public.get("manifest_get", 0)) - by_imports,
        dockerhub_pulls_by_imports=by_imports,
        public_manifest_gets_by_app=kinds["source GET"],
    )
