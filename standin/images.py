"""Small OCI images made without Docker, pushed over the distribution API.

An image here is one uncompressed tar layer holding a file whose content comes from
a seed string, a config and a manifest; a multi-platform image adds an OCI index
over one such manifest per platform. The same seed always gives the same bytes and
so the same digest; another seed gives another digest, which is how a tag "moves".

The push follows the OCI distribution specification, v1.1: "Pushing blobs"
(POST then PUT with ``?digest=``) and "Pushing manifests" (PUT by digest, then by
tag).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NewType
from urllib.parse import urljoin

import requests

Digest = NewType("Digest", str)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# Uncompressed on purpose: gzip output differs between zlib builds, and the digests
# must not.
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

# Without the OCI types a registry answers 404 for an OCI manifest; with the index
# types first, a multi-platform tag resolves to its index.
MANIFEST_ACCEPT = ", ".join(
    (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
)

SEED_FILE = "etc/standin/image"
REQUEST_TIMEOUT_SECONDS = 10.0


class RegistryError(Exception):
    """A registry answered a push or a lookup with something unexpected."""


@dataclass(frozen=True, slots=True)
class Platform:
    """``os/architecture`` of one manifest in an index."""

    os: str
    architecture: str

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}"


LINUX_AMD64 = Platform("linux", "amd64")
LINUX_ARM64 = Platform("linux", "arm64")
SINGLE_PLATFORM = (LINUX_AMD64,)
MULTI_PLATFORM = (LINUX_AMD64, LINUX_ARM64)


@dataclass(frozen=True, slots=True)
class Content:
    """Bytes with their media type, addressed by digest."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> Digest:
        return Digest("sha256:" + hashlib.sha256(self.data).hexdigest())

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


@dataclass(frozen=True, slots=True)
class Image:
    """What one tag needs: its blobs, and its manifests in the order to push them.

    The last manifest is the one the tag points at: the index of a multi-platform
    image, or the only manifest of a single-platform one.
    """

    blobs: tuple[Content, ...]
    manifests: tuple[Content, ...]

    @property
    def top(self) -> Content:
        return self.manifests[-1]

    @property
    def digest(self) -> Digest:
        return self.top.digest

    @property
    def is_index(self) -> bool:
        return self.top.media_type == OCI_INDEX


def build_image(seed: str, platforms: Sequence[Platform] = SINGLE_PLATFORM) -> Image:
    """Builds an image whose bytes depend on the seed and the platforms only."""
    if not platforms:
        raise ValueError("an image needs at least one platform, got none")

    blobs: list[Content] = []
    manifests: list[Content] = []
    for platform in platforms:
        layer, config, manifest = _build_platform_image(seed, platform)
        blobs += [layer, config]
        manifests.append(manifest)

    if len(platforms) > 1:
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                manifest.descriptor(
                    platform={"os": platform.os, "architecture": platform.architecture}
                )
                for manifest, platform in zip(manifests, platforms, strict=True)
            ],
        }
        manifests.append(Content(OCI_INDEX, _canonical_json(index)))
    return Image(blobs=tuple(blobs), manifests=tuple(manifests))


def registry_session() -> requests.Session:
    """A session for loopback registries: proxies from the environment never apply."""
    session = requests.Session()
    session.trust_env = False
    return session


def push_image(
    session: requests.Session,
    registry_url: str,
    repository: str,
    tag: str,
    image: Image,
) -> Digest:
    """Pushes an image under a tag; returns the digest the registry answered."""
    for blob in image.blobs:
        _push_blob(session, registry_url, repository, blob)
    return push_manifests(session, registry_url, repository, tag, image)


def push_manifests(
    session: requests.Session,
    registry_url: str,
    repository: str,
    tag: str,
    image: Image,
) -> Digest:
    """Pushes an image's manifests under a tag, its blobs being in the repository
    already; returns the digest the registry answered.

    The manifests an index lists go in by digest first; the top manifest goes in
    by tag alone, which stores it under its digest too.
    """
    for manifest in image.manifests[:-1]:
        _put_manifest(session, registry_url, repository, manifest.digest, manifest)
    answered = _put_manifest(session, registry_url, repository, tag, image.top)

    digest = answered.headers.get("Docker-Content-Digest")
    if digest is None:
        digest = head_digest(session, registry_url, repository, tag)
    if digest != image.digest:
        raise RegistryError(
            f"a pushed tag must resolve to the pushed manifest: "
            f"{repository}:{tag} resolves to {digest}, pushed {image.digest}"
        )
    return image.digest


def annotated(image: Image, annotations: dict[str, str]) -> Image:
    """The image with annotations on its top manifest: the same blobs and platform
    manifests, another digest. Many images can share their blobs this way, as
    images built on one base share its layers."""
    document = json.loads(image.top.data)
    document["annotations"] = {**document.get("annotations", {}), **annotations}
    top = Content(image.top.media_type, _canonical_json(document))
    return Image(blobs=image.blobs, manifests=(*image.manifests[:-1], top))


def head_digest(
    session: requests.Session, registry_url: str, repository: str, reference: str
) -> Digest | None:
    """The digest a tag or digest resolves to, or None when the registry has none."""
    url = f"{registry_url}/v2/{repository}/manifests/{reference}"
    response = session.head(
        url, headers={"Accept": MANIFEST_ACCEPT}, timeout=REQUEST_TIMEOUT_SECONDS
    )
    if response.status_code == 404:
        return None
    _expect(response, 200)
    digest = response.headers.get("Docker-Content-Digest")
    if not digest:
        raise RegistryError(f"a manifest HEAD must answer Docker-Content-Digest: {url}")
    return Digest(digest)


def _build_platform_image(
    seed: str, platform: Platform
) -> tuple[Content, Content, Content]:
    layer = Content(
        OCI_LAYER, _tar_with_file(SEED_FILE, f"{seed} {platform}\n".encode())
    )
    config = {
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Labels": {"org.opencontainers.image.description": seed}},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    }
    config_blob = Content(OCI_CONFIG, _canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor()],
    }
    return layer, config_blob, Content(OCI_MANIFEST, _canonical_json(manifest))


def _tar_with_file(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        # Fixed owner, mode and time: the archive's bytes depend on the data only.
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _canonical_json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _push_blob(
    session: requests.Session, registry_url: str, repository: str, blob: Content
) -> None:
    blob_url = f"{registry_url}/v2/{repository}/blobs/{blob.digest}"
    if session.head(blob_url, timeout=REQUEST_TIMEOUT_SECONDS).status_code == 200:
        return

    started = session.post(
        f"{registry_url}/v2/{repository}/blobs/uploads/",
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    _expect(started, 202)
    location = urljoin(registry_url + "/", started.headers["Location"])
    separator = "&" if "?" in location else "?"

    finished = session.put(
        f"{location}{separator}digest={blob.digest}",
        data=blob.data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    _expect(finished, 201)


def _put_manifest(
    session: requests.Session,
    registry_url: str,
    repository: str,
    reference: str,
    manifest: Content,
) -> requests.Response:
    response = session.put(
        f"{registry_url}/v2/{repository}/manifests/{reference}",
        data=manifest.data,
        headers={"Content-Type": manifest.media_type},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    _expect(response, 201)
    return response


def _expect(response: requests.Response, status: int) -> None:
    if response.status_code != status:
        raise RegistryError(
            f"the registry must answer {status} to {response.request.method} "
            f"{response.url}, got {response.status_code}: {response.text[:300]}"
        )
