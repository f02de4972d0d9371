"""Where pull tokens come from: a registry's own token realm, or ACR's exchange.

A public registry hands out tokens at the realm its challenge names, anonymously or
for an account sent with HTTP Basic. ACR first trades a Microsoft Entra token for a
refresh token at ``/oauth2/exchange``, then the refresh token for access tokens at
``/oauth2/token`` (the ACR authentication documentation, "AAD to ACR token
exchange"). Both take several ``scope`` parameters in one request.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest, HttpResponse

from sync_core.distribution import Challenge, Token
from sync_core.errors import (
    FatalRunError,
    RateLimitedError,
    RegistryError,
    RegistryUnavailableError,
)
from sync_core.http import HttpClient, HttpOptions
from sync_core.settings import DockerHubCredentials

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential

# The distribution spec's token answer may leave out expires_in; it then means 60 s.
_DEFAULT_TOKEN_SECONDS = 60.0
_FORM = "application/x-www-form-urlencoded"


class TokenRequestError(RegistryError):
    """A token service refused or failed a token request."""


def pull_scopes(repositories: Sequence[str]) -> list[tuple[str, str]]:
    """One ``scope`` parameter per repository, asking for pull access."""
    return [("scope", f"repository:{repository}:pull") for repository in repositories]


class _Realms:
    """One HTTP client per token-service origin, made when first needed.

    A realm on the registry's own host (ACR's always is) shares the registry's
    client and so its open connections.
    """

    def __init__(self, options: HttpOptions, shared: HttpClient | None) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._clients: dict[str, HttpClient] = {}
        self._owned: list[HttpClient] = []
        if shared is not None:
            self._clients[_origin(shared.base_url)] = shared

    def send(self, request: HttpRequest) -> HttpResponse:
        origin = _origin(request.url)
        with self._lock:
            client = self._clients.get(origin)
            if client is None:
                client = self._clients[origin] = HttpClient(origin, self._options)
                self._owned.append(client)
        try:
            return client.send(request)
        except AzureError as error:
            raise TokenRequestError(
                f"the token service could not be reached: {origin} ({error.message})"
            ) from error

    def close(self) -> None:
        with self._lock:
            for client in self._owned:
                client.close()
            self._owned.clear()
            self._clients.clear()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class RegistryTokenSource:
    """Tokens from a registry's realm, anonymous or with Docker Hub credentials."""

    def __init__(
        self,
        options: HttpOptions,
        credentials: DockerHubCredentials | None = None,
        *,
        shared: HttpClient | None = None,
    ) -> None:
        self._realms = _Realms(options, shared)
        self._credentials = credentials

    def fetch(self, challenge: Challenge, repositories: Sequence[str]) -> Token:
        params = pull_scopes(repositories)
        if challenge.service:
            params.insert(0, ("service", challenge.service))
        separator = "&" if "?" in challenge.realm else "?"
        headers = {"Accept": "application/json"}
        if self._credentials is not None:
            pair = f"{self._credentials.username}:{self._credentials.token}"
            headers["Authorization"] = "Basic " + base64.b64encode(
                pair.encode()
            ).decode("ascii")
        request = HttpRequest(
            "GET", challenge.realm + separator + urlencode(params), headers=headers
        )

        response = self._realms.send(request)
        body = _json_body(response, challenge.realm)
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            raise TokenRequestError(
                f"a token answer must carry a token: {challenge.realm} answered "
                f"fields {sorted(body)}"
            )
        lifetime = body.get("expires_in")
        seconds = (
            float(lifetime)
            if isinstance(lifetime, int | float) and lifetime > 0
            else _DEFAULT_TOKEN_SECONDS
        )
        return Token(value=value, expires_at=time.time() + seconds)

    def close(self) -> None:
        self._realms.close()


class AcrTokenSource:
    """ACR access tokens for a managed identity, through the refresh-token exchange."""

    def __init__(
        self,
        options: HttpOptions,
        *,
        login_server: str,
        credential: TokenCredential,
        audience: str,
        shared: HttpClient | None = None,
    ) -> None:
        self._realms = _Realms(options, shared)
        self._login_server = login_server
        self._credential = credential
        self._scope = audience.rstrip("/") + "/.default"
        self._lock = threading.Lock()
        self._exchange_lock = threading.Lock()
        self._refresh: Token | None = None

    def fetch(self, challenge: Challenge, repositories: Sequence[str]) -> Token:
        service = challenge.service or self._login_server
        refresh = self._refresh_token(service)
        form = [
            ("grant_type", "refresh_token"),
            ("service", service),
            *pull_scopes(repositories),
            ("refresh_token", refresh.value),
        ]

        response = self._post_form(challenge.realm, form)
        value = _json_body(response, challenge.realm).get("access_token")
        if not isinstance(value, str) or not value:
            raise TokenRequestError(
                f"an ACR token answer must carry access_token: {challenge.realm}"
            )
        return Token(value=value, expires_at=_jwt_expiry(value, _DEFAULT_TOKEN_SECONDS))

    def prepare(self, challenge: Challenge | None) -> None:
        """Trades the identity's token for a refresh token now, ahead of any read."""
        service = (challenge.service if challenge else None) or self._login_server
        self._refresh_token(service)

    def _refresh_token(self, service: str) -> Token:
        # One exchange at a time: concurrent token requests share its result.
        with self._exchange_lock:
            now = time.time()
            with self._lock:
                if self._refresh is not None and self._refresh.is_fresh(now):
                    return self._refresh
            return self._exchange(service, now)

    def _exchange(self, service: str, now: float) -> Token:
        entra = get_entra_token(self._credential, self._scope)
        form = [
            ("grant_type", "access_token"),
            ("service", service),
            ("access_token", entra.token),
        ]
        url = f"https://{self._login_server}/oauth2/exchange"

        response = self._post_form(url, form)
        value = _json_body(response, url).get("refresh_token")
        if not isinstance(value, str) or not value:
            raise TokenRequestError(
                f"an ACR exchange answer must carry refresh_token: {url}"
            )
        token = Token(
            value=value, expires_at=_jwt_expiry(value, entra.expires_on - now)
        )
        with self._lock:
            self._refresh = token
        return token

    def _post_form(self, url: str, form: list[tuple[str, str]]) -> HttpResponse:
        request = HttpRequest(
            "POST",
            url,
            content=urlencode(form),
            headers={"Content-Type": _FORM, "Accept": "application/json"},
        )
        return self._realms.send(request)

    def close(self) -> None:
        self._realms.close()


def _json_body(response: HttpResponse, url: str) -> dict[str, Any]:
    where = urlsplit(url)._replace(query="").geturl()
    if response.status_code == 429:
        raise RateLimitedError(
            f"the token service kept answering 429 Too Many Requests: {where}",
            registry=urlsplit(url).netloc,
        )
    if response.status_code >= 500:
        raise RegistryUnavailableError(
            f"the token service kept answering HTTP {response.status_code}: {where}"
        )
    if response.status_code != 200:
        raise TokenRequestError(
            f"the token service refused the request with HTTP "
            f"{response.status_code}: {urlsplit(url)._replace(query='').geturl()}"
        )
    try:
        body = response.json()
    except ValueError as error:
        raise TokenRequestError(f"a token answer must be JSON: {url}") from error
    if not isinstance(body, dict):
        raise TokenRequestError(f"a token answer must be a JSON object: {url}")
    return body


def _jwt_expiry(token: str, fallback_seconds: float) -> float:
    """The ``exp`` claim of a JWT, or now plus the fallback when it has none."""
    fallback = time.time() + max(fallback_seconds, 0.0)
    parts = token.split(".")
    if len(parts) != 3:
        return fallback
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return fallback
    expiry = claims.get("exp") if isinstance(claims, dict) else None
    return float(expiry) if isinstance(expiry, int | float) else fallback


def get_entra_token(credential: TokenCredential, scope: str) -> AccessToken:
    """A Microsoft Entra token; a failure stops the run, as no entry can succeed."""
    from azure.core.exceptions import ClientAuthenticationError

    try:
        return credential.get_token(scope)
    except ClientAuthenticationError as error:
        raise FatalRunError(
            f"the managed identity must give the app a token for {scope}; "
            f"check ACRSYNC_MANAGED_IDENTITY_CLIENT_ID (empty for the "
            f"system-assigned identity, else a user-assigned identity's client id, "
            f"not its object id): {_first_line(error.message)}",
            reason="identity-unavailable",
        ) from error


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"
