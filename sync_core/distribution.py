"""Reading manifest digests over the OCI distribution API.

A ``HEAD /v2/<repository>/manifests/<reference>`` answers the digest in
``Docker-Content-Digest`` without counting as a pull on Docker Hub. Registries guard
it with the bearer-token flow of the distribution spec: a 401 carries a
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge, the client
asks the realm for a token and repeats the request. Where the realm is known, tokens
for many repositories are asked in one request (several ``scope`` parameters), as
Docker Hub and ACR both allow, so a run spends few requests on tokens.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest, HttpResponse

from sync_core.errors import (
    RateLimitedError,
    RegistryAccessDeniedError,
    RegistryError,
    RegistryUnavailableError,
)
from sync_core.http import HttpClient
from sync_core.reference import Digest

# Without the OCI types in Accept, registries answer 404 for OCI manifests; the
# index types come first so that a multi-arch tag resolves to its index.
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")

# A token is asked again this long before it expires, so no request carries one
# that expires on its way.
_EXPIRY_MARGIN_SECONDS = 30.0
# How many repository scopes one token request carries, to keep its URL short.
_SCOPES_PER_TOKEN_REQUEST = 40


@dataclass(frozen=True, slots=True)
class Challenge:
    """A bearer challenge: where to ask for a token, and for which service."""

    realm: str
    service: str | None

    @classmethod
    def parse(cls, header: str | None) -> Challenge | None:
        if not header or not header.lower().startswith("bearer "):
            return None
        params = dict(_CHALLENGE_PARAM.findall(header))
        realm = params.get("realm")
        if not realm:
            return None
        return cls(realm=realm, service=params.get("service"))


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and the moment it stops being worth sending."""

    value: str
    expires_at: float

    def is_fresh(self, now: float) -> bool:
        return now < self.expires_at - _EXPIRY_MARGIN_SECONDS


class TokenSource(Protocol):
    """Obtains a token for pull access to some repositories under a challenge."""

    def fetch(self, challenge: Challenge, repositories: Sequence[str]) -> Token: ...


class DistributionClient:
    """Resolves manifest digests in one registry, caching pull tokens per repository."""

    def __init__(self, http: HttpClient, tokens: TokenSource, *, name: str) -> None:
        self._http = http
        self._tokens = tokens
        self.name = name
        self._lock = threading.Lock()
        # Held while the challenge is asked, so that concurrent callers ask once.
        self._challenge_lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._challenge_known = False
        self._cache: dict[str, Token] = {}
        # Docker Hub tells every answer how many pulls are left; None: not counted.
        self.pulls_remaining: int | None = None

    def token_batches(self, repositories: Iterable[str]) -> list[list[str]]:
        """The repositories still without a fresh token, in batches of one request."""
        now = time.time()
        with self._lock:
            missing = sorted({r for r in repositories if not self._fresh_token(r, now)})
        return [
            missing[start : start + _SCOPES_PER_TOKEN_REQUEST]
            for start in range(0, len(missing), _SCOPES_PER_TOKEN_REQUEST)
        ]

    def authorize(self, repositories: Sequence[str]) -> None:
        """Asks for pull tokens for many repositories in one request."""
        challenge = self.learn_challenge()
        if challenge is not None:
            self._store(repositories, self._tokens.fetch(challenge, repositories))

    def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        """The digest a tag or digest resolves to, or None when there is none."""
        response = self._head_manifest(repository, reference)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _unexpected(self.name, repository, reference, response)
        digest = response.headers.get("Docker-Content-Digest", "")
        if not _DIGEST.match(digest):
            raise RegistryError(
                f"a manifest answer must carry a Docker-Content-Digest header: "
                f"{self.name}/{repository}:{reference} answered {digest!r}"
            )
        return Digest(digest)

    def _head_manifest(self, repository: str, reference: str) -> HttpResponse:
        url = f"/v2/{repository}/manifests/{reference}"
        token = self._fresh_token(repository, time.time())
        response = self._send("HEAD", url, token)
        if response.status_code != 401:
            return response

        challenge = Challenge.parse(response.headers.get("WWW-Authenticate"))
        if challenge is None:
            raise RegistryError(
                f"a 401 must carry a bearer challenge: {self.name}/{repository} "
                f"answered {response.headers.get('WWW-Authenticate')!r}"
            )
        with self._lock:
            self._challenge, self._challenge_known = challenge, True
        token = self._tokens.fetch(challenge, [repository])
        self._store([repository], token)
        response = self._send("HEAD", url, token)
        if response.status_code == 401:
            raise RegistryAccessDeniedError(
                f"the registry refused pull access, so the repository does not exist "
                f"or is private: {self.name}/{repository}"
            )
        return response

    def learn_challenge(self) -> Challenge | None:
        """The registry's bearer challenge, asked once with ``GET /v2/``."""
        with self._challenge_lock:
            with self._lock:
                if self._challenge_known:
                    return self._challenge
            response = self._send("GET", "/v2/", None)
            if response.status_code not in (200, 401):
                raise _unexpected(self.name, "", "/v2/", response)
            challenge = Challenge.parse(response.headers.get("WWW-Authenticate"))
            with self._lock:
                self._challenge, self._challenge_known = challenge, True
            return challenge

    def _fresh_token(self, repository: str, now: float) -> Token | None:
        token = self._cache.get(repository)
        return token if token is not None and token.is_fresh(now) else None

    def _store(self, repositories: Iterable[str], token: Token) -> None:
        with self._lock:
            for repository in repositories:
                self._cache[repository] = token

    def _send(self, method: str, url: str, token: Token | None) -> HttpResponse:
        headers = {"Accept": _ACCEPT}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.value}"
        try:
            response = self._http.send(HttpRequest(method, url, headers=headers))
        except AzureError as error:
            raise RegistryUnavailableError(
                f"the registry could not be reached: {self.name} ({error.message})"
            ) from error
        remaining = parse_rate_limit(response.headers.get("ratelimit-remaining"))
        if remaining is not None:
            self.pulls_remaining = remaining
        return response


def _unexpected(
    name: str, repository: str, reference: str, response: HttpResponse
) -> RegistryError:
    """The error for an answer the retry policy gave up on, or never retries."""
    status = response.status_code
    where = f"{name}/{repository} {reference}".rstrip()
    if status == 429:
        return RateLimitedError(
            f"the registry kept answering 429 Too Many Requests: {where}",
            registry=name,
        )
    if status >= 500:
        return RegistryUnavailableError(
            f"the registry kept answering HTTP {status}: {where}"
        )
    return RegistryError(f"the registry answered HTTP {status}: {where}")


def parse_rate_limit(value: str | None) -> int | None:
    """The count in Docker Hub's ``ratelimit-remaining: N;w=SECONDS``, if any."""
    if not value:
        return None
    count = value.split(";", 1)[0].strip()
    return int(count) if count.isdigit() else None
