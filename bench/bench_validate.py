"""Benchmark: validate a 10,000-line image list, its time and its peak memory.

Run from the repository root::

    .venv/bin/python -m bench.bench_validate [--lines N] [--repeat R] [--budget S]

The list mixes what real lists hold: comments and blank lines, short Docker Hub
names, other registries, tags, pinned digests, targets with and without tags, and
trailing comments. Time is the best of ``--repeat`` runs of ``parse_image_list`` on
the file's bytes; peak memory is what ``tracemalloc`` saw allocated during one more
run, measured apart because tracing slows the parser. Exits 1 when the best time is
over the budget.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence

from sync_core.imagelist import parse_image_list

REGISTRIES = (
    "",
    "docker.io/",
    "registry.k8s.io/",
    "quay.io/",
    "ghcr.io/",
    "mcr.microsoft.com/",
    "localhost:5000/",
)


def build_list(lines: int) -> bytes:
    """A deterministic list of ``lines`` lines, every entry distinct."""
    rows = []
    for number in range(lines):
        if number % 10 == 0:
            rows.append(f"# group {number // 10}: reviewed by the platform team")
            continue
        if number % 25 == 1:
            rows.append("")
            continue
        registry = REGISTRIES[number % len(REGISTRIES)]
        repository = f"team{number % 97}/app-{number}"
        tag = f"v{number % 7}.{number % 13}.{number}"
        if number % 3 == 0:
            digest = hashlib.sha256(str(number).encode()).hexdigest()
            source = f"{registry}{repository}:{tag}@sha256:{digest}"
        else:
            source = f"{registry}{repository}:{tag}"
        target = f"mirror/{repository}" if number % 2 else f"mirror/{repository}:{tag}"
        comment = "   # pinned by ops" if number % 5 == 0 else ""
        rows.append(f"{source} => {target}{comment}")
    return ("\n".join(rows) + "\n").encode()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds")
    arguments = parser.parse_args(argv)
    data = build_list(arguments.lines)

    timings = []
    for _ in range(arguments.repeat):
        started = time.perf_counter()
        image_list = parse_image_list(data)
        timings.append(time.perf_counter() - started)

    tracemalloc.start()
    parse_image_list(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    best = min(timings)
    sys.stdout.write(
        f"lines: {arguments.lines}, bytes: {len(data)}, "
        f"entries: {len(image_list.entries)}\n"
        f"time: best {best * 1000:.1f} ms, median "
        f"{statistics.median(timings) * 1000:.1f} ms over {arguments.repeat} runs\n"
        f"peak memory (tracemalloc): {peak / 1024 / 1024:.1f} MiB\n"
    )
    if best > arguments.budget:
        sys.stdout.write(f"over budget: {best:.3f} s > {arguments.budget:.3f} s\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
