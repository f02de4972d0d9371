"""Running a program and reading what it cost: wall time, CPU time, peak memory.

The child is reaped with ``os.wait4``, which hands back that one process's own
resource use; ``RUSAGE_CHILDREN`` would mix every child the benchmark ever had.
Output goes to files, so nothing has to be read while waiting.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ChildTimedOutError(Exception):
    """The program ran past its time and was killed."""


@dataclass(frozen=True, slots=True)
class Finished:
    """A program that ran to its end."""

    returncode: int
    wall_seconds: float
    cpu_seconds: float
    max_rss_kib: int
    stdout: str
    stderr: str

    @property
    def max_rss_mib(self) -> float:
        return self.max_rss_kib / 1024


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    output_dir: Path,
    name: str,
    cwd: Path | None = None,
    timeout_seconds: float = 1800.0,
) -> Finished:
    """Runs ``argv`` to its end; its output is kept in ``output_dir/name.out|err``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = output_dir / f"{name}.out", output_dir / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(timeout_seconds, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    # Popen must not wait for a child that wait4 has reaped already.
    process.returncode = os.waitstatus_to_exitcode(status)
    if timed_out.is_set():
        raise ChildTimedOutError(
            f"{' '.join(argv[:4])} ran past {timeout_seconds:.0f} s and was killed"
        )
    return Finished(
        returncode=process.returncode,
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        max_rss_kib=usage.ru_maxrss,
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
    )
