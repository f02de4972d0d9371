"""The retry policy every HTTP pipeline of this package uses.

It is azure-core's own ``RetryPolicy`` (429, 408 and 5xx, with exponential backoff),
taught two things registries do: Docker Hub has been seen to send ``Retry-After`` as
a Unix timestamp as well as seconds or an HTTP date, and no single wait may run past
the cap, whatever the server asks for. Backoff without a ``Retry-After`` gets full
jitter so that concurrent workers do not retry in step.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.pipeline.policies import RetryPolicy

# A Retry-After larger than this many seconds is read as a Unix timestamp: no server
# asks for a wait of thirty years.
_UNIX_TIMESTAMP_THRESHOLD = 1_000_000_000


def parse_retry_after(value: str, *, now: float | None = None) -> float:
    """Seconds to wait for a ``Retry-After`` in seconds, HTTP date or Unix time."""
    text = value.strip()
    current = time.time() if now is None else now
    try:
        number = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return 0.0
        return max(0.0, moment.timestamp() - current)
    if number >= _UNIX_TIMESTAMP_THRESHOLD:
        return max(0.0, number - current)
    return max(0.0, number)


class CappedRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's retry policy with capped waits, jitter and Unix timestamps.

    With a ``deadline`` (on the ``time.monotonic`` clock, the run's budget) no wait
    reaches past it: a retry whose wait would end after the deadline is not made,
    and the last answer (a 429, a 503) is returned for the caller to report.
    """

    def __init__(
        self,
        *,
        max_wait_seconds: float,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retry_backoff_max", max_wait_seconds)
        super().__init__(**kwargs)
        self.max_wait_seconds = max_wait_seconds
        self.deadline = deadline

    def seconds_left(self) -> float:
        if self.deadline is None:
            return float("inf")
        return max(0.0, self.deadline - time.monotonic())

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        if not super().is_retry(settings, response):
            return False
        wait = self.get_retry_after(response) or 0.0
        return wait < self.seconds_left()

    def parse_retry_after(self, retry_after: str) -> float:
        return min(parse_retry_after(retry_after), self.max_wait_seconds)

    def get_retry_after(self, response: Any) -> float | None:
        headers = response.http_response.headers
        value = headers.get("retry-after")
        if value:
            return self.parse_retry_after(value)
        delay = super().get_retry_after(response)
        return None if delay is None else min(delay, self.max_wait_seconds)

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        ceiling = min(super().get_backoff_time(settings), self.seconds_left())
        return random.uniform(0, ceiling) if ceiling > 0 else 0.0  # noqa: S311 - jitter, not a secret
