"""Tokens the stand-in mints and checks, and what a principal may be granted.

Every token is a compact JWT (RFC 7519) signed with HMAC-SHA256. Three families
share the signing key and are told apart by their audience and ``grant_type``:

- Entra ID access tokens from the managed identity endpoint (``aud`` is the
  resource asked for, ``oid`` the principal, ``appid`` its client id);
- ACR refresh and access tokens from ``/oauth2/exchange`` and ``/oauth2/token``
  (``aud`` is the login server; an access token lists its ``access``);
- public registry tokens from each front's ``/token`` (``aud`` is its service).

The payload is laid out so that standard base64 decodes it too: the ACR SDK reads
a refresh token's ``exp`` with ``base64.b64decode`` rather than the URL-safe
alphabet JWTs use (azure-containerregistry 1.2.0, ``_helpers._parse_exp_time``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

Claims = dict[str, Any]

# Registry scope grammar, from the distribution token specification:
# ``resourcetype:resourcename:action[,action...]``; several scopes may share one
# field, separated by spaces.
REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG = "catalog"

IMPORT_ACTION = "Microsoft.ContainerRegistry/registries/importImage/action"
READ_REGISTRY_ACTION = "Microsoft.ContainerRegistry/registries/read"

_ALL_DATA_ACTIONS = frozenset(
    {"pull", "push", "delete", "metadata_read", "metadata_write", "catalog"}
)
_READ_DATA_ACTIONS = frozenset({"pull", "metadata_read", "catalog"})


@dataclass(frozen=True, slots=True)
class Role:
    """What one built-in role allows: ARM actions and registry data actions."""

    arm_actions: frozenset[str]
    data_actions: frozenset[str]


# The built-in roles a registry is usually given; "*" stands for every ARM action.
# https://learn.microsoft.com/azure/container-registry/container-registry-roles
ROLES: Mapping[str, Role] = {
    "Owner": Role(frozenset({"*"}), _ALL_DATA_ACTIONS),
    "Contributor": Role(frozenset({"*"}), _ALL_DATA_ACTIONS),
    "Reader": Role(frozenset({READ_REGISTRY_ACTION}), frozenset()),
    "AcrPull": Role(frozenset(), _READ_DATA_ACTIONS),
    "AcrPush": Role(frozenset(), _READ_DATA_ACTIONS | {"push", "metadata_write"}),
    "AcrDelete": Role(frozenset(), frozenset({"delete"})),
    "Container Registry Data Importer and Data Reader": Role(
        frozenset({IMPORT_ACTION, READ_REGISTRY_ACTION}), _READ_DATA_ACTIONS
    ),
    "Container Registry Repository Reader": Role(frozenset(), _READ_DATA_ACTIONS),
    "Container Registry Repository Writer": Role(
        frozenset(), _READ_DATA_ACTIONS | {"push", "metadata_write"}
    ),
}


def allows_arm_action(roles: Iterable[str], action: str) -> bool:
    """True when one of the roles allows the ARM action."""
    for name in roles:
        role = ROLES.get(name)
        if role and ("*" in role.arm_actions or action in role.arm_actions):
            return True
    return False


def data_actions(roles: Iterable[str]) -> frozenset[str]:
    """The registry data actions the roles allow together."""
    allowed: set[str] = set()
    for name in roles:
        role = ROLES.get(name)
        if role:
            allowed |= role.data_actions
    return frozenset(allowed)


class TokenProblem(Enum):
    """Why a token was refused."""

    MALFORMED = "malformed"
    SIGNATURE = "signature"
    EXPIRED = "expired"
    AUDIENCE = "audience"
    GRANT = "grant"


class TokenError(Exception):
    """A token failed a check; ``problem`` says which."""

    def __init__(self, problem: TokenProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Access:
    """One scope of a registry token: a resource and the actions on it."""

    type: str
    name: str
    actions: tuple[str, ...]

    def to_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scopes(fields: Iterable[str]) -> list[Access]:
    """The scopes in ``scope`` fields; malformed ones are skipped, as registries do.

    A repository name may hold a port (``host:5000/repo``), so the type ends at the
    first colon and the actions start after the last.
    """
    scopes: list[Access] = []
    for field in fields:
        for item in field.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name and actions:
                listed = tuple(action for action in actions.split(",") if action)
                scopes.append(Access(kind, name, listed))
    return scopes


def granted(claims: Mapping[str, Any], kind: str, name: str, action: str) -> bool:
    """True when an access token's ``access`` claim covers the action."""
    for entry in claims.get("access") or ():
        if not isinstance(entry, dict):
            continue
        if entry.get("type") != kind or entry.get("name") != name:
            continue
        actions = entry.get("actions") or ()
        if action in actions or "*" in actions:
            return True
    return False


class TokenSigner:
    """Mints and verifies the stand-in's JWTs with one HMAC key."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock

    @classmethod
    def from_secret(
        cls, secret: str, clock: Callable[[], float] = time.time
    ) -> TokenSigner:
        """A signer whose key follows from a configured secret, so tokens outlive a
        restart of the stand-in with the same configuration."""
        key = hashlib.sha256(b"standin-token-key\0" + secret.encode()).digest()
        return cls(key, clock)

    def now(self) -> int:
        return int(self._clock())

    def mint(self, claims: Mapping[str, Any], ttl_seconds: float) -> str:
        """A signed token with the claims plus ``jti``, ``iat``, ``nbf`` and ``exp``."""
        issued = self.now()
        payload = {
            "jti": str(uuid.uuid4()),
            "iat": issued,
            "nbf": issued,
            "exp": issued + max(1, int(ttl_seconds)),
            **claims,
        }
        header = _encode_segment({"alg": "HS256", "typ": "JWT"})
        body = _encode_segment(payload)
        signature = _b64url(self._sign(f"{header}.{body}".encode()))
        return f"{header}.{body}.{signature}"

    def verify(
        self,
        token: str,
        *,
        audiences: Collection[str],
        grant_type: str | None = None,
    ) -> Claims:
        """The token's claims once signature, expiry, audience and grant hold."""
        claims = self.read_unverified(token)

        header, body, signature = token.split(".")
        expected = self._sign(f"{header}.{body}".encode())
        if not hmac.compare_digest(_b64url(expected), signature):
            raise TokenError(TokenProblem.SIGNATURE, "the token signature is invalid")

        expires = claims.get("exp")
        if not isinstance(expires, int) or expires <= self.now():
            raise TokenError(
                TokenProblem.EXPIRED,
                f"the token expired at {expires} (now {self.now()})",
            )

        audience = claims.get("aud")
        if audience not in audiences:
            raise TokenError(
                TokenProblem.AUDIENCE,
                f"the token audience {audience!r} is not one of {sorted(audiences)}",
            )

        if grant_type is not None and claims.get("grant_type") != grant_type:
            raise TokenError(
                TokenProblem.GRANT,
                f"a {grant_type} token is required, got {claims.get('grant_type')!r}",
            )
        return claims

    @staticmethod
    def read_unverified(token: str) -> Claims:
        """The payload of a well-formed JWT, trusting nothing in it."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError(TokenProblem.MALFORMED, "a JWT has three segments")
        try:
            claims = json.loads(_b64url_decode(parts[1]))
        except (ValueError, binascii.Error) as error:
            raise TokenError(
                TokenProblem.MALFORMED, f"the JWT payload: {error}"
            ) from error
        if not isinstance(claims, dict):
            raise TokenError(TokenProblem.MALFORMED, "the JWT payload is not an object")
        return claims

    def _sign(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()


def _encode_segment(value: Mapping[str, Any]) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    # Base64 gives "-" or "_" (standard "+" or "/") for an ASCII byte only when it is
    # the third of a group and one of ">?~" or DEL; escaping those keeps both
    # alphabets identical. Padding the JSON to whole groups of three leaves no "="
    # to restore, which a reader that pads wrongly would otherwise need.
    for char in ">?~\x7f":
        text = text.replace(char, f"\\u{ord(char):04x}")
    data = text.encode("ascii")
    data += b" " * (-len(data) % 3)
    return _b64url(data)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
