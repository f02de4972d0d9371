"""Measuring one run of the app against the stand-in.

The run happens in a child process (``bench.app_run``), so its peak memory is its
own: the maximum resident set size ``wait4`` reports for it, interpreter and
imports included. Around it the stand-in's counters are reset and read, and the
CPU time the stand-in's processes spent is read from ``/proc``, to tell a run
bound by waiting from one bound by this machine's cores.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.children import run_measured
from bench.guard import GuardProxy
from bench.requests_count import RequestCounts, classify
from standin.harness import Standin
from standin.processes import PROJECT_ROOT


class RunFailedError(Exception):
    """The app's run did not end as a run: the message has its output's tail."""


@dataclass(frozen=True, slots=True)
class AppRun:
    """What one run of the app did and cost."""

    mode: str
    entries: int
    settings: Mapping[str, str]
    wall_seconds: float
    process_seconds: float
    cpu_seconds: float
    max_rss_mib: float
    status: str
    counts: Mapping[str, int]
    requests: RequestCounts
    standin_cpu_seconds: Mapping[str, float]
    timeline: Mapping[str, float] = field(default_factory=dict)
    left_loopback: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "entries": self.entries,
            "settings": dict(self.settings),
            "wall_seconds": round(self.wall_seconds, 3),
            "process_seconds": round(self.process_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "max_rss_mib": round(self.max_rss_mib, 1),
            "status": self.status,
            "counts": dict(self.counts),
            "requests": dict(self.requests.kinds),
            "requests_total": self.requests.total,
            "dockerhub_pulls_by_app": self.requests.dockerhub_pulls_by_app,
            "dockerhub_pulls_by_imports": self.requests.dockerhub_pulls_by_imports,
            "standin_cpu_seconds": {
                name: round(seconds, 3)
                for name, seconds in self.standin_cpu_seconds.items()
            },
            "timeline": dict(self.timeline),
            "left_loopback": list(self.left_loopback),
        }


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a running process (proc_pid_stat(5), fields
    14 and 15); zero when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def standin_cpu(standin: Standin) -> dict[str, float]:
    """CPU seconds each of the stand-in's processes has used so far."""
    return {
        record.name: process_cpu_seconds(record.pid) for record in standin.processes
    }


def run_app(
    standin: Standin,
    *,
    mode: str,
    settings: Mapping[str, str],
    work_dir: Path,
    name: str,
    guard: GuardProxy,
) -> AppRun:
    """Runs the app once with the stand-in's settings plus ``settings``."""
    standin.control.reset_stats()
    result_path = work_dir / f"{name}.json"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(work_dir)),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(PROJECT_ROOT),
        **standin.app_settings(),
        **settings,
        **guard.environment(),
    }
    attempts_before = len(guard.attempts)
    cpu_before = standin_cpu(standin)

    finished = run_measured(
        [sys.executable, "-m", "bench.app_run", mode, str(result_path)],
        env=environment,
        output_dir=work_dir,
        name=name,
        cwd=PROJECT_ROOT,
    )

    cpu_after = standin_cpu(standin)
    stats = standin.control.stats()
    if finished.returncode != 0 or not result_path.exists():
        raise RunFailedError(
            f"the app's {mode} run must end with a report, exited "
            f"{finished.returncode}: {finished.stderr.strip()[-1500:]}"
        )
    result = json.loads(result_path.read_text(encoding="utf-8"))
    storage_ports = {standin.ports.blob, standin.ports.queue}
    storage = sum(
        count
        for endpoint, count in result["requests_by_endpoint"].items()
        if int(endpoint.rpartition(":")[2]) in storage_ports
    )
    return AppRun(
        mode=mode,
        entries=int(result["entries"]),
        settings=dict(settings),
        wall_seconds=float(result["wall_seconds"]),
        process_seconds=finished.wall_seconds,
        cpu_seconds=finished.cpu_seconds,
        max_rss_mib=finished.max_rss_mib,
        status=str(result["status"]),
        counts=dict(result["counts"]),
        requests=classify(stats, storage),
        standin_cpu_seconds={
            name: cpu_after.get(name, 0.0) - before
            for name, before in cpu_before.items()
        },
        timeline=dict(result.get("timeline") or {}),
        left_loopback=guard.attempts[attempts_before:],
    )
