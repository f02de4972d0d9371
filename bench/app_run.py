"""One run of the app in a process of its own, as the benchmark measures it.

    python -m bench.app_run {sync,plan} RESULT_JSON

The environment carries the app settings. The run reads the published list from
storage, as the timer's run does, through ``sync_core.run.execute``; the time
measured is that call's, from settings to stored report. Every request the
process sends is counted by host and port where urllib3 sends it, below
azure-core's retries, so storage requests are counted too and each retry is one
more; the first and last request of each method are timed from the run's start.
Logs go to ``RESULT_JSON`` with ``.log`` added, at INFO as the Functions host
keeps them by default (``host.json``).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class RequestLog:
    """Every request the process sends, counted by ``host:port`` where urllib3
    sends it, with when the first and last of each method went out (an import's
    POST counted as ``import``)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.by_endpoint: Counter[str] = Counter()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self._lock = threading.Lock()

    def note(self, endpoint: str, method: str) -> None:
        moment = time.perf_counter() - self.started
        with self._lock:
            self.by_endpoint[endpoint] += 1
            self.first.setdefault(method, moment)
            self.last[method] = moment

    def install(self) -> None:
        """Wraps the one method every urllib3 request passes through: nothing in
        the app changes, and the count sees the retries azure-core makes."""
        from urllib3.connectionpool import HTTPConnectionPool

        send: Callable[..., Any] = HTTPConnectionPool._make_request
        log = self

        def counted(
            pool: HTTPConnectionPool,
            connection: Any,
            method: str,
            url: str,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            kind = "import" if "/importImage" in url else method
            log.note(f"{pool.host}:{pool.port}", kind)
            return send(pool, connection, method, url, *args, **kwargs)

        # The wrapper takes any arguments, so it is typed looser than the method.
        HTTPConnectionPool._make_request = counted  # type: ignore[method-assign,assignment]

    def timeline(self) -> dict[str, float]:
        """Seconds from the start of the run to the first and last request of each
        method."""
        with self._lock:
            moments = {f"first_{m.lower()}": t for m, t in self.first.items()}
            moments |= {f"last_{m.lower()}": t for m, t in self.last.items()}
        return {name: round(moment, 3) for name, moment in sorted(moments.items())}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 2 or arguments[0] not in {"sync", "plan"}:
        sys.stderr.write("usage: python -m bench.app_run {sync,plan} RESULT_JSON\n")
        return 2
    mode_name, result_path = arguments[0], Path(arguments[1])
    logging.basicConfig(
        filename=f"{result_path}.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    requests = RequestLog()
    requests.install()

    from sync_core.run import Mode, RunRequest, execute

    cpu_started = time.process_time()
    requests.started = started = time.perf_counter()
    report = execute(RunRequest(mode=Mode(mode_name), trigger="bench"), os.environ)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started

    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "max_rss_kib": usage.ru_maxrss,
        "status": str(report.status),
        "counts": dict(report.counts),
        "message": report.message,
        "entries": len(report.entries),
        "requests_by_endpoint": dict(requests.by_endpoint),
        "timeline": requests.timeline(),
    }
    result_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
