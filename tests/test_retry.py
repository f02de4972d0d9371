"""Retry-After is understood in all three forms registries send, and capped."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from sync_core.retry import CappedRetryPolicy, parse_retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (formatdate(NOW + 45, usegmt=True), 45.0),
        (str(int(NOW + 20)), 20.0),
        (str(int(NOW - 20)), 0.0),
        ("soon", 0.0),
    ],
)
def test_retry_after_is_read_as_seconds_http_date_or_unix_time(
    header: str, seconds: float
) -> None:
    assert parse_retry_after(header, now=NOW) == pytest.approx(seconds, abs=1.0)


def test_no_wait_goes_past_the_cap() -> None:
    policy = CappedRetryPolicy(max_wait_seconds=10.0)

    assert policy.parse_retry_after("3600") == 10.0


def test_backoff_without_retry_after_is_jittered_below_its_ceiling() -> None:
    policy = CappedRetryPolicy(max_wait_seconds=4.0, retry_backoff_factor=1.0)
    settings = {"history": [object()] * 6, "backoff": 1.0, "max_backoff": 4.0}

    waits = {policy.get_backoff_time(settings) for _ in range(50)}

    assert all(0.0 <= wait <= 4.0 for wait in waits)
    assert len(waits) > 1


class _Answer:
    """Just enough of a pipeline response for the retry policy to read."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.http_response = self
        self.status_code = status
        self.headers = headers


def test_a_retry_whose_wait_ends_after_the_deadline_is_not_made() -> None:
    import time

    policy = CappedRetryPolicy(max_wait_seconds=60.0, deadline=time.monotonic() + 5)
    settings = policy.configure_retries({})
    soon = _Answer(429, {"Retry-After": "2"})
    late = _Answer(429, {"Retry-After": "20"})

    assert policy.is_retry(settings, soon) is True
    assert policy.is_retry(settings, late) is False
