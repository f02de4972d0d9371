"""The managed identity endpoint, as App Service and Azure Functions serve it.

``GET /msi/token?api-version=2019-08-01&resource=R`` with the header
``X-IDENTITY-HEADER`` answers an Entra ID access token for the resource. Without
a selector it is the system-assigned identity's; ``client_id``, ``principal_id``
or ``object_id`` choose a user-assigned one. Errors are App Service's shape:
``{"statusCode": N, "message": ..., "correlationId": ...}``.
https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from standin.stats import RequestLabel
from standin.tokens import TokenSigner

if TYPE_CHECKING:
    from standin.faults import Fault
    from standin.server import Exchange, Tunables

logger = logging.getLogger(__name__)

TOKEN_PATH = "/msi/token"  # noqa: S105 - a URL path, not a secret
API_VERSION = "2019-08-01"
_SELECTORS = ("client_id", "principal_id", "object_id", "mi_res_id")


@dataclass(frozen=True, slots=True)
class ManagedIdentity:
    """A managed identity: its application (client) id and its principal (object) id."""

    client_id: str
    principal_id: str
    kind: str


class IdentityEndpoint:
    """Issues tokens for the configured managed identities."""

    def __init__(
        self,
        *,
        header_secret: str,
        system_assigned: ManagedIdentity | None,
        user_assigned: Sequence[ManagedIdentity],
        tenant_id: str,
        signer: TokenSigner,
        tunables: Tunables,
    ) -> None:
        self._header_secret = header_secret
        self._system_assigned = system_assigned
        self._user_assigned = tuple(user_assigned)
        self._tenant_id = tenant_id
        self._signer = signer
        self._tunables = tunables

    def label(self, exchange: Exchange) -> RequestLabel:
        kind = "token" if exchange.path == TOKEN_PATH else "other"
        return RequestLabel("identity", kind)

    def handle(self, exchange: Exchange, fault: Fault | None) -> None:
        if exchange.path != TOKEN_PATH or exchange.method != "GET":
            self.send_status(exchange, 404, None, f"No route for {exchange.path}", {})
            return

        secret = exchange.header("X-IDENTITY-HEADER")
        if secret is None:
            self.send_status(
                exchange, 400, None, "The X-IDENTITY-HEADER header is missing.", {}
            )
            return
        if not hmac.compare_digest(secret.encode(), self._header_secret.encode()):
            self.send_status(
                exchange, 401, None, "The X-IDENTITY-HEADER header is invalid.", {}
            )
            return
        if exchange.query_value("api-version") != API_VERSION:
            self.send_status(
                exchange,
                400,
                None,
                f"The api-version must be {API_VERSION}, "
                f"got {exchange.query_value('api-version')!r}.",
                {},
            )
            return
        resource = exchange.query_value("resource")
        if not resource:
            self.send_status(
                exchange, 400, None, "The 'resource' parameter is required.", {}
            )
            return

        identity, problem = self._select(exchange)
        if identity is None:
            self.send_status(exchange, 400, None, problem, {})
            return

        ttl = self._tunables.token_ttl_seconds
        token = self._signer.mint(
            {
                "aud": resource,
                "iss": f"https://sts.windows.net/{self._tenant_id}/",
                "tid": self._tenant_id,
                "oid": identity.principal_id,
                "sub": identity.principal_id,
                "appid": identity.client_id,
                "appidacr": "2",
                "idtyp": "app",
                "xms_mitype": identity.kind,
            },
            ttl,
        )
        logger.debug(
            "identity token issued client_id=%s resource=%s",
            identity.client_id,
            resource,
        )
        exchange.send_json(
            200,
            {
                "access_token": token,
                "expires_on": str(self._signer.now() + ttl),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id,
            },
        )

    def send_status(
        self,
        exchange: Exchange,
        status: int,
        code: str | None,
        message: str | None,
        headers: Mapping[str, str],
    ) -> None:
        text = message or code or f"The managed identity endpoint answered {status}."
        exchange.send_json(
            status,
            {"statusCode": status, "message": text, "correlationId": str(uuid.uuid4())},
            headers,
        )

    def _select(self, exchange: Exchange) -> tuple[ManagedIdentity | None, str]:
        """The identity the query names, or None with the reason."""
        given = {name: exchange.query_value(name) for name in _SELECTORS}
        chosen = {name: value for name, value in given.items() if value}
        if len(chosen) > 1:
            return None, f"Only one of {', '.join(_SELECTORS)} may be given."
        if not chosen:
            if self._system_assigned is None:
                return None, "No system-assigned managed identity is enabled."
            return self._system_assigned, ""

        name, value = next(iter(chosen.items()))
        candidates = [*self._user_assigned]
        if self._system_assigned is not None:
            candidates.append(self._system_assigned)
        for identity in candidates:
            if name == "client_id" and identity.client_id == value:
                return identity, ""
            if name in {"principal_id", "object_id"} and identity.principal_id == value:
                return identity, ""
        return None, "Unable to load the proper Managed Identity."
