"""The machine a benchmark ran on, in one line and as a record."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _first(path: str, prefix: str) -> str | None:
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(prefix):
            return line.split(":", 1)[1].strip() if ":" in line else line
    return None


def describe() -> dict[str, str]:
    """CPU, cores, memory, operating system, Python, and the load when asked."""
    memory = _first("/proc/meminfo", "MemTotal")
    memory_gib = f"{int(memory.split()[0]) / 1024 / 1024:.1f} GiB" if memory else "?"
    release = _first("/etc/os-release", "PRETTY_NAME=")
    system = release.split("=", 1)[1].strip('"') if release else platform.system()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or "?",
        "cores": str(os.cpu_count()),
        "memory": memory_gib,
        "system": f"{system}, Linux {platform.release()}",
        "python": platform.python_version(),
        "load": load,
    }


def one_line(machine: dict[str, str]) -> str:
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']}, "
        f"{machine['system']}, Python {machine['python']}"
    )
