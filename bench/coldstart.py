"""Cold start: how long importing ``function_app`` takes, beside ``azure.functions``.

When the Functions host starts a worker, the worker imports ``function_app`` to
index its functions; nothing runs before that import ends. Each measurement is a
fresh interpreter that times the import alone (interpreter start-up excluded), the
two modules taking turns so that a busy moment of the machine hits both alike; the
figure is the median. One more run with ``-X importtime`` names what the app's own
import adds, and the heavy SDKs are checked to be absent until a run needs them.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass

from standin.processes import PROJECT_ROOT

# SDKs a run needs and an index does not: loading them at import slows every start.
HEAVY_PACKAGES = (
    "azure.identity",
    "azure.mgmt",
    "azure.storage",
    "azure.core.pipeline.transport",
    "msal",
    "cryptography",
    "requests",
)
_TIMER = """\
import json, sys, time
started = time.perf_counter()
__import__(sys.argv[1])
seconds = time.perf_counter() - started
prefixes = json.loads(sys.argv[2])
heavy = sorted(
    {n for n in sys.modules for p in prefixes if n == p or n.startswith(p + ".")}
)
print(json.dumps({"seconds": seconds, "modules": len(sys.modules), "heavy": heavy}))
"""
_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class ImportTiming:
    """A module's import, timed in fresh interpreters."""

    module: str
    seconds: list[float]
    modules_loaded: int
    heavy_loaded: list[str]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass(frozen=True, slots=True)
class ColdStart:
    """``function_app`` beside ``azure.functions``, and what the app adds."""

    app: ImportTiming
    functions: ImportTiming
    heaviest_added: list[tuple[str, float]]

    @property
    def ratio(self) -> float:
        return self.app.median / self.functions.median


def _time_once(
    module: str, environment: dict[str, str]
) -> tuple[float, int, list[str]]:
    answer = subprocess.run(
        [sys.executable, "-c", _TIMER, module, json.dumps(HEAVY_PACKAGES)],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
        env=environment,
        timeout=120,
    )
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), int(result["modules"]), list(result["heavy"])


def _heaviest_added(
    environment: dict[str, str], count: int = 5
) -> list[tuple[str, float]]:
    """The top-level packages ``function_app`` imports that ``azure.functions`` does
    not, by cumulative import time in one ``-X importtime`` run."""
    answer = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import azure.functions, function_app",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
        env=environment,
        timeout=120,
    )
    lines = [_IMPORTTIME.match(line) for line in answer.stderr.splitlines()]
    # Each nesting level indents the name by two more spaces after the bar.
    parsed = [
        (match[4], (len(match[3]) - 1) // 2, int(match[2]) / 1e6)
        for match in lines
        if match
    ]
    # A module is listed after what it imported; what comes after azure.functions'
    # own line is what the app's import added.
    after = next(
        (
            index
            for index, (name, depth, _) in enumerate(parsed)
            if name == "azure.functions" and depth == 0
        ),
        -1,
    )
    added = [
        (name, seconds) for name, depth, seconds in parsed[after + 1 :] if depth == 1
    ]
    return sorted(added, key=lambda item: item[1], reverse=True)[:count]


def measure_cold_start(runs: int = 9) -> ColdStart:
    """Times both imports ``runs`` times each, taking turns."""
    environment = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    timings: dict[str, list[float]] = {"function_app": [], "azure.functions": []}
    details: dict[str, tuple[int, list[str]]] = {}
    # One unmeasured round fills the operating system's file cache.
    for module in timings:
        _time_once(module, environment)
    for _ in range(runs):
        for module, seconds in timings.items():
            took, loaded, heavy = _time_once(module, environment)
            seconds.append(took)
            details[module] = (loaded, heavy)
    return ColdStart(
        app=ImportTiming(
            "function_app", timings["function_app"], *details["function_app"]
        ),
        functions=ImportTiming(
            "azure.functions", timings["azure.functions"], *details["azure.functions"]
        ),
        heaviest_added=_heaviest_added(environment),
    )


def describe(cold: ColdStart) -> list[str]:
    """Lines for the benchmark's output."""
    lines = [
        f"  import function_app:    median {cold.app.median * 1000:6.1f} ms "
        f"({cold.app.modules_loaded} modules loaded), {len(cold.app.seconds)} fresh "
        "interpreters",
        f"  import azure.functions: median {cold.functions.median * 1000:6.1f} ms "
        f"({cold.functions.modules_loaded} modules loaded)",
        f"  ratio {cold.ratio:.2f} (target <= 1.50)",
        "  heavy SDKs loaded by the import: "
        + (", ".join(cold.app.heavy_loaded) or "none"),
    ]
    if cold.heaviest_added:
        shown = ", ".join(
            f"{name} {seconds * 1000:.1f} ms" for name, seconds in cold.heaviest_added
        )
        lines.append(f"  what function_app adds, by cumulative import time: {shown}")
    return lines


def main() -> int:
    for line in describe(measure_cold_start()):
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
