"""Moving images between registries over the distribution API, byte for byte.

``Backend`` speaks HTTP to one registry (the docker-registry backends, or a public
front over https); ``RegistryReader`` adds the bearer-token flow a client meets at
a public registry; ``copy_image`` is what an ACR import does once ARM accepted it:
fetch the manifest (and, for an index, each child), fetch the blobs, push blobs
and manifests by digest into the target, then point each target tag at the image.

The routes are those of the OCI distribution specification v1.1: "Pulling
manifests", "Pulling blobs", "Pushing blobs" (POST then PUT with ``?digest=``, or a
cross-repository mount) and "Pushing manifests".

Import failures carry the ARM error code the operation reports:

- ``SourceImageNotFound``: the repository is missing or private (the registry
  answered 401 even with a token, as Docker Hub does), or the manifest is unknown;
- ``SourceRegistryAuthenticationFailed``: the credentials sent were refused;
- ``TooManyRequests``: the source registry answered 429;
- ``SourceRegistryUnavailable``: it answered 5xx, or did not answer at all;
- ``TooManyManifests``: the image holds more than 50 manifests;
- ``TagAlreadyExists``: mode NoForce and a target tag points at another digest;
- ``DigestMismatch``: the manifest's bytes do not hash to the digest asked for.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import logging
import re
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, urlencode, urljoin, urlsplit

logger = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
# Index types first, so a multi-platform tag resolves to its index.
MANIFEST_ACCEPT = ", ".join(
    (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
)

MAX_MANIFESTS = 50
TIMEOUT_SECONDS = 30.0
_COPY_CHUNK = 1 << 16
_IDLE_PER_THREAD = 2
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class CopyError(Exception):
    """An import step failed; ``code`` is the ARM error code the import reports."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BackendError(Exception):
    """A registry gave an answer the stand-in cannot work with."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole HTTP answer, body read."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        return json.loads(self.body)


class Backend:
    """HTTP to one registry base URL; keeps one connection per thread.

    Only loopback URLs are accepted: the stand-in talks to nothing else. ``headers``
    go with every request (an import's pulls name themselves in ``User-Agent``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = TIMEOUT_SECONDS,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.hostname not in {"127.0.0.1", "localhost"} or parts.port is None:
            raise ValueError(
                f"a backend must be a loopback URL with a port: {base_url}"
            )
        if parts.scheme not in {"http", "https"}:
            raise ValueError(f"a backend URL is http or https: {base_url}")
        self.base_url = f"{parts.scheme}://{parts.hostname}:{parts.port}"
        self.host = parts.hostname
        self.port = parts.port
        self.secure = parts.scheme == "https"
        self._ssl_context = ssl_context
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._local = threading.local()

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        """Sends a request and reads the whole answer."""
        with self.stream(method, target, headers, body) as response:
            data = b"" if method == "HEAD" else response.read()
            return Reply(response.status, response.headers, data)

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
    ) -> Iterator[http.client.HTTPResponse]:
        """Sends a request; the answer's body is the caller's to read.

        Whatever the caller leaves unread is drained afterwards, so the connection
        can serve the next request. While an answer is open its connection is the
        caller's alone: a request made meanwhile gets another.
        """
        replayable = body is None or isinstance(body, bytes)
        connection = self._acquire()
        try:
            response = self._send(connection, method, target, headers, body)
        except (http.client.HTTPException, OSError):
            connection.close()
            if not replayable:
                raise
            # A kept-alive connection the registry closed meanwhile: once more, anew.
            connection = self._new_connection()
            response = self._send(connection, method, target, headers, body)

        try:
            yield response
            if method != "HEAD":
                while response.read(_COPY_CHUNK):
                    pass
        except BaseException:
            connection.close()
            raise
        finally:
            response.close()
        if response.will_close:
            connection.close()
        else:
            self._release(connection)

    def _send(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        target: str,
        headers: Mapping[str, str] | None,
        body: bytes | BinaryIO | None,
    ) -> http.client.HTTPResponse:
        sent = {"Host": f"{self.host}:{self.port}", **self._headers, **(headers or {})}
        if body is None and method in {"POST", "PUT", "PATCH"}:
            sent.setdefault("Content-Length", "0")
        connection.request(method, target, body=body, headers=sent)
        return connection.getresponse()

    def _acquire(self) -> http.client.HTTPConnection:
        idle: list[http.client.HTTPConnection] = getattr(self._local, "idle", [])
        self._local.idle = idle
        while idle:
            connection = idle.pop()
            if connection.sock is not None:
                return connection
        return self._new_connection()

    def _release(self, connection: http.client.HTTPConnection) -> None:
        idle: list[http.client.HTTPConnection] = getattr(self._local, "idle", [])
        self._local.idle = idle
        if connection.sock is None or len(idle) >= _IDLE_PER_THREAD:
            connection.close()
        else:
            idle.append(connection)

    def _new_connection(self) -> http.client.HTTPConnection:
        if self.secure:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self._timeout, context=self._ssl_context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self._timeout)


def repository_path(repository: str) -> str:
    """A repository name as it goes into a URL path: slashes kept, the rest quoted."""
    return quote(repository, safe="/")


def parse_challenge(header: str) -> dict[str, str]:
    """The parameters of a ``Bearer`` challenge (RFC 6750, section 3)."""
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    return dict(_CHALLENGE_PARAM.findall(params))


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest's exact bytes, its media type and its digest."""

    media_type: str
    data: bytes
    digest: str

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def document(self) -> dict[str, Any]:
        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise BackendError(f"manifest {self.digest} is not a JSON object")
        return value

    def children(self) -> list[str]:
        """The digests an index lists; none for an image manifest."""
        if not self.is_index:
            return []
        return [entry["digest"] for entry in self.document().get("manifests", [])]

    def blobs(self) -> list[tuple[str, int]]:
        """The config and layers an image manifest refers to, as (digest, size)."""
        document = self.document()
        descriptors = [document.get("config"), *document.get("layers", [])]
        return [
            (entry["digest"], int(entry.get("size", 0)))
            for entry in descriptors
            if isinstance(entry, dict) and "digest" in entry
        ]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(reference: str) -> bool:
    return _DIGEST.match(reference) is not None


class RegistryReader:
    """Reads manifests and blobs from a registry, answering its token challenges.

    ``display`` names the registry in error messages (``docker.io``).
    """

    def __init__(
        self,
        backend: Backend,
        display: str,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self._backend = backend
        self._display = display
        self._credentials = credentials
        self._tokens: dict[str, str] = {}
        self._challenge: http.client.HTTPMessage | None = None
        self._pinged = False

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        self._authenticate(repository)
        target = f"/v2/{repository_path(repository)}/manifests/{reference}"
        reply = self._request("GET", target, repository, {"Accept": MANIFEST_ACCEPT})
        if reply.status != 200:
            self._fail(reply, repository, reference)
        media_type = (reply.header("Content-Type") or "").split(";")[0].strip()
        return Manifest(media_type, reply.body, digest_of(reply.body))

    @contextlib.contextmanager
    def open_blob(
        self, repository: str, digest: str
    ) -> Iterator[tuple[http.client.HTTPResponse, int]]:
        """The blob's body as a stream, with its length."""
        target = f"/v2/{repository_path(repository)}/blobs/{digest}"
        with self._backend.stream(
            "GET", target, self._authorization(repository)
        ) as response:
            if response.status != 401:
                yield self._blob_stream(response, repository, digest)
                return
            challenge = response.headers
        # The token ran out since the manifest was read: one more, then the blob.
        self._answer_challenge(challenge, repository)
        with self._backend.stream(
            "GET", target, self._authorization(repository)
        ) as response:
            yield self._blob_stream(response, repository, digest)

    def _blob_stream(
        self, response: http.client.HTTPResponse, repository: str, digest: str
    ) -> tuple[http.client.HTTPResponse, int]:
        if response.status != 200:
            reply = Reply(response.status, response.headers, response.read())
            self._fail(reply, repository, digest)
        length = response.headers.get("Content-Length")
        if length is None:
            raise CopyError(
                "SourceRegistryUnavailable",
                f"{self._display} sent blob {digest} without a Content-Length",
            )
        return response, int(length)

    def _request(
        self, method: str, target: str, repository: str, headers: Mapping[str, str]
    ) -> Reply:
        """One request, answering at most one token challenge on the way."""
        try:
            reply = self._backend.request(
                method, target, {**headers, **self._authorization(repository)}
            )
            if reply.status == 401 and self._answer_challenge(
                reply.headers, repository
            ):
                reply = self._backend.request(
                    method, target, {**headers, **self._authorization(repository)}
                )
        except OSError as error:
            raise CopyError(
                "SourceRegistryUnavailable", f"{self._display} did not answer: {error}"
            ) from error
        return reply

    def _authenticate(self, repository: str) -> None:
        """Gets a token before the first request, as registry clients do: ``GET /v2/``
        names the token service in its challenge (distribution specification,
        "Determining support"), so no manifest request is spent on a 401."""
        if repository in self._tokens:
            return
        if not self._pinged:
            self._pinged = True
            try:
                reply = self._backend.request("GET", "/v2/")
            except OSError as error:
                raise CopyError(
                    "SourceRegistryUnavailable",
                    f"{self._display} did not answer: {error}",
                ) from error
            if reply.status == 401:
                self._challenge = reply.headers
        if self._challenge is not None:
            self._answer_challenge(self._challenge, repository)

    def _authorization(self, repository: str) -> dict[str, str]:
        token = self._tokens.get(repository)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _answer_challenge(
        self, headers: http.client.HTTPMessage, repository: str
    ) -> bool:
        """Fetches a token for a challenge; False when there is no Bearer challenge."""
        challenge = parse_challenge(headers.get("WWW-Authenticate") or "")
        realm = challenge.get("realm")
        if not realm:
            return False
        realm_parts = urlsplit(realm)
        if (realm_parts.hostname, realm_parts.port) != (
            self._backend.host,
            self._backend.port,
        ):
            # The token service must be the registry's own: nothing else is asked.
            raise CopyError(
                "SourceRegistryUnavailable",
                f"{self._display} named a token service elsewhere: {realm}",
            )

        query = {
            "service": challenge.get("service", ""),
            "scope": f"repository:{repository}:pull",
        }
        token_headers: dict[str, str] = {}
        if self._credentials:
            token_headers["Authorization"] = _basic(*self._credentials)
        reply = self._backend.request(
            "GET", f"{realm_parts.path}?{urlencode(query)}", token_headers
        )
        if reply.status == 401:
            account = self._credentials[0] if self._credentials else "anonymous"
            raise CopyError(
                "SourceRegistryAuthenticationFailed",
                f"{self._display} refused the credentials of {account}: "
                f"{_error_text(reply)}",
            )
        if reply.status != 200:
            self._fail(reply, repository, "token")
        answer = reply.json()
        self._tokens[repository] = answer.get("token") or answer.get("access_token", "")
        return True

    def _fail(self, reply: Reply, repository: str, reference: str) -> None:
        image = f"{self._display}/{repository}:{reference}"
        if is_digest(reference):
            image = f"{self._display}/{repository}@{reference}"
        detail = _error_text(reply)
        if reply.status == 401:
            raise CopyError(
                "SourceImageNotFound",
                f"The source image {image} was not found: the repository does not "
                f"exist or requires authorization ({reply.status} {detail}).",
            )
        if reply.status == 404:
            raise CopyError(
                "SourceImageNotFound",
                f"The source image {image} was not found ({reply.status} {detail}).",
            )
        if reply.status == 429:
            retry_after = reply.header("Retry-After")
            hint = f" Retry-After: {retry_after}." if retry_after else ""
            raise CopyError(
                "TooManyRequests",
                f"{self._display} answered 429 Too Many Requests for {image}: "
                f"{detail}.{hint}",
            )
        raise CopyError(
            "SourceRegistryUnavailable",
            f"{self._display} answered {reply.status} for {image}: {detail}.",
        )


class TagNotes(Protocol):
    """Told of every manifest and tag written, so the target can date them."""

    def manifest_written(self, repository: str, digest: str) -> None: ...

    def tag_written(self, repository: str, tag: str, digest: str) -> None: ...


class RegistryWriter:
    """Pushes blobs and manifests into a registry without auth (the ACR backend)."""

    def __init__(self, backend: Backend, notes: TagNotes | None = None) -> None:
        self._backend = backend
        self._notes = notes

    def head_manifest(self, repository: str, reference: str) -> str | None:
        target = f"/v2/{repository_path(repository)}/manifests/{reference}"
        reply = self._backend.request("HEAD", target, {"Accept": MANIFEST_ACCEPT})
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise BackendError(f"HEAD {target} answered {reply.status}")
        return reply.header("Docker-Content-Digest")

    def has_blob(self, repository: str, digest: str) -> bool:
        target = f"/v2/{repository_path(repository)}/blobs/{digest}"
        return self._backend.request("HEAD", target).status == 200

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        query = urlencode({"mount": digest, "from": source_repository})
        target = f"/v2/{repository_path(repository)}/blobs/uploads/?{query}"
        reply = self._backend.request("POST", target)
        if reply.status == 201:
            return True
        self._cancel(reply)
        return False

    def upload_blob(
        self, repository: str, digest: str, data: BinaryIO, length: int
    ) -> None:
        target = f"/v2/{repository_path(repository)}/blobs/uploads/"
        started = self._backend.request("POST", target)
        location = started.header("Location")
        if started.status != 202 or not location:
            raise BackendError(f"POST {target} answered {started.status}")

        upload = urlsplit(urljoin(self._backend.base_url + target, location))
        separator = "&" if upload.query else ""
        put_target = (
            f"{upload.path}?{upload.query}{separator}{urlencode({'digest': digest})}"
        )
        headers = {
            "Content-Length": str(length),
            "Content-Type": "application/octet-stream",
        }
        with self._backend.stream("PUT", put_target, headers, data) as response:
            if response.status != 201:
                raise BackendError(
                    f"PUT blob {digest} into {repository} answered {response.status}: "
                    f"{response.read()[:300]!r}"
                )

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        target = f"/v2/{repository_path(repository)}/manifests/{reference}"
        reply = self._backend.request(
            "PUT", target, {"Content-Type": manifest.media_type}, manifest.data
        )
        if reply.status != 201:
            raise BackendError(
                f"PUT {target} answered {reply.status}: {reply.body[:300]!r}"
            )
        if self._notes is None:
            return
        if is_digest(reference):
            self._notes.manifest_written(repository, manifest.digest)
        else:
            self._notes.tag_written(repository, reference, manifest.digest)

    def _cancel(self, reply: Reply) -> None:
        location = reply.header("Location")
        if reply.status == 202 and location:
            upload = urlsplit(urljoin(self._backend.base_url, location))
            self._backend.request("DELETE", f"{upload.path}?{upload.query}")


@dataclass(frozen=True, slots=True)
class CopyPlan:
    """What one import copies: a source image into target repositories and tags."""

    source_repository: str
    reference: str
    target_tags: tuple[tuple[str, str], ...]
    untagged_repositories: tuple[str, ...] = ()
    force: bool = False
    write_tags: bool = True
    max_manifests: int = MAX_MANIFESTS
    target_repositories: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        ordered = [repository for repository, _ in self.target_tags]
        ordered += list(self.untagged_repositories)
        object.__setattr__(self, "target_repositories", tuple(dict.fromkeys(ordered)))


def copy_image(reader: RegistryReader, writer: RegistryWriter, plan: CopyPlan) -> str:
    """Copies the image and points the target tags at it; returns its digest."""
    top = reader.get_manifest(plan.source_repository, plan.reference)
    if is_digest(plan.reference) and top.digest != plan.reference:
        raise CopyError(
            "DigestMismatch",
            f"the manifest of {plan.source_repository}@{plan.reference} hashes to "
            f"{top.digest}",
        )
    manifests = _collect_manifests(reader, plan, top)

    if not plan.force:
        _refuse_moved_tags(writer, plan, top.digest)

    first_repository: str | None = None
    for repository in plan.target_repositories:
        for blob, _ in _blobs_of(manifests):
            _copy_blob(
                reader,
                writer,
                blob,
                source_repository=plan.source_repository,
                repository=repository,
                mount_from=first_repository,
            )
        for manifest in manifests:
            writer.put_manifest(repository, manifest.digest, manifest)
        first_repository = first_repository or repository

    if plan.write_tags:
        for repository, tag in plan.target_tags:
            writer.put_manifest(repository, tag, top)
    logger.info(
        "image copied source=%s@%s digest=%s targets=%s",
        plan.source_repository,
        plan.reference,
        top.digest,
        ",".join(f"{repository}:{tag}" for repository, tag in plan.target_tags),
    )
    return top.digest


def _collect_manifests(
    reader: RegistryReader, plan: CopyPlan, top: Manifest
) -> list[Manifest]:
    """Every manifest of the image, children before the index that lists them."""
    ordered: list[Manifest] = []
    seen: set[str] = set()

    def visit(manifest: Manifest) -> None:
        seen.add(manifest.digest)
        children = [digest for digest in manifest.children() if digest not in seen]
        # Counted from the index itself, before any child is fetched.
        if len(seen) + len(set(children)) > plan.max_manifests:
            raise CopyError(
                "TooManyManifests",
                f"an image may hold at most {plan.max_manifests} manifests; "
                f"{plan.source_repository}:{plan.reference} holds more",
            )
        for child_digest in children:
            if child_digest in seen:
                continue
            child = reader.get_manifest(plan.source_repository, child_digest)
            if child.digest != child_digest:
                raise CopyError(
                    "DigestMismatch",
                    f"child {child_digest} of {top.digest} hashes to {child.digest}",
                )
            visit(child)
        ordered.append(manifest)

    visit(top)
    return ordered


def _blobs_of(manifests: Sequence[Manifest]) -> list[tuple[str, int]]:
    blobs: dict[str, int] = {}
    for manifest in manifests:
        if not manifest.is_index:
            blobs.update(manifest.blobs())
    return list(blobs.items())


def _refuse_moved_tags(writer: RegistryWriter, plan: CopyPlan, digest: str) -> None:
    for repository, tag in plan.target_tags:
        existing = writer.head_manifest(repository, tag)
        if existing is not None and existing != digest:
            raise CopyError(
                "TagAlreadyExists",
                f"Tag {repository}:{tag} already exists in target registry "
                f"with digest {existing}; import mode NoForce does not overwrite it.",
            )


def _copy_blob(
    reader: RegistryReader,
    writer: RegistryWriter,
    digest: str,
    *,
    source_repository: str,
    repository: str,
    mount_from: str | None,
) -> None:
    if writer.has_blob(repository, digest):
        return
    if mount_from and writer.mount_blob(repository, digest, mount_from):
        return
    with reader.open_blob(source_repository, digest) as (stream, length):
        writer.upload_blob(repository, digest, stream, length)


def _basic(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _error_text(reply: Reply) -> str:
    """The first registry error's code and message, or the start of the body."""
    try:
        document = reply.json()
    except ValueError:
        return reply.body[:200].decode("utf-8", "replace") or "no body"
    if isinstance(document, dict):
        errors = document.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return f"{errors[0].get('code', '')}: {errors[0].get('message', '')}"
        if "details" in document:
            return str(document["details"])
    return reply.body[:200].decode("utf-8", "replace")
