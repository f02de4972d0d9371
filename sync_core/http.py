"""HTTP pipelines built from azure-core, shared by every registry client.

One pipeline per base URL, a connection pool sized to the run's concurrency, and the
package's retry policy, so a 429 or a 5xx is retried the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from azure.core import PipelineClient
from azure.core.pipeline.policies import HeadersPolicy, UserAgentPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse

from sync_core.retry import CappedRetryPolicy

USER_AGENT = "acr-image-sync/0.1"


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """How patient every HTTP client of a run is."""

    pool_size: int
    request_timeout_seconds: float
    retry_total: int = 4
    max_wait_seconds: float = 60.0
    # The run's deadline on the ``time.monotonic`` clock; no retry waits past it.
    deadline: float | None = None

    def retry_policy(self) -> CappedRetryPolicy:
        return CappedRetryPolicy(
            max_wait_seconds=self.max_wait_seconds,
            deadline=self.deadline,
            retry_total=self.retry_total,
        )


class HttpClient:
    """A small synchronous client for one base URL on an azure-core pipeline."""

    def __init__(self, base_url: str, options: HttpOptions) -> None:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=options.pool_size
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        transport = RequestsTransport(
            session=session,
            session_owner=True,
            connection_timeout=options.request_timeout_seconds,
            read_timeout=options.request_timeout_seconds,
        )
        self.base_url = base_url.rstrip("/")
        self._client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            self.base_url,
            transport=transport,
            policies=[
                HeadersPolicy(),
                UserAgentPolicy(base_user_agent=USER_AGENT),
                options.retry_policy(),
            ],
        )

    def send(self, request: HttpRequest) -> HttpResponse:
        """Sends a request; a relative URL is taken against the base URL."""
        if request.url.startswith("/"):
            request.url = self.base_url + request.url
        return self._client.send_request(request)

    def close(self) -> None:
        self._client.close()
