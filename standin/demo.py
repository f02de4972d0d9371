"""The main job end to end on the local stand-in: ``make demo``.

It starts the stand-in, publishes the example list to Azurite, and runs the app's
sync three times through ``function_app``'s own timer handler, as the Functions host
would: first everything is imported; then nothing changes and no manifest GET reaches
the public side; then one upstream tag moves and exactly that image is updated.
Last, skopeo reads every image on both sides and the digests are compared. It stops
everything it started, also on failure.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from standin.harness import EXAMPLE_IMAGE_LIST, Standin

MOVED = ("quay.io", "jetstack/cert-manager-webhook", "v1.15.2")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="acrsync-demo-") as folder:
        state_dir = Path(folder)
        print("starting the stand-in (Azurite, two registries, ACR and identity)")
        with Standin.start(state_dir / "standin") as standin:
            return _demo(standin, state_dir)


def _demo(standin: Standin, state_dir: Path) -> int:
    os.environ.update(standin.app_settings())
    timer = _timer_handler()
    failures: list[str] = []

    first = _run("run 1", standin, timer)
    _expect(failures, first["counts"].get("imported") == 7, "run 1 imports all 7")

    standin.control.reset_stats()
    second = _run("run 2", standin, timer)
    gets = _public_manifest_gets(standin.control.stats())
    print(f"        manifest GETs on the public side during run 2: {gets}")
    _expect(failures, second["counts"].get("unchanged") == 7, "run 2 changes nothing")
    _expect(failures, gets == 0, "run 2 sends no manifest GET upstream")

    new_digest = standin.move_tag(*MOVED)
    print(f"moved {'/'.join(MOVED[:2])}:{MOVED[2]} upstream to {new_digest}")
    third = _run("run 3", standin, timer)
    updated = [row for row in third["entries"] if row["action"] == "updated"]
    _expect(
        failures,
        third["counts"].get("updated") == 1
        and third["counts"].get("unchanged") == 6
        and updated[0]["digest"] == new_digest,
        "run 3 updates exactly the moved image",
    )

    failures += _compare_with_skopeo(standin, state_dir)
    for failure in failures:
        print(f"FAILED: {failure}")
    print("demo passed" if not failures else "demo failed")
    return 1 if failures else 0


def _timer_handler() -> Callable[[Any], None]:
    """The timer function exactly as the host indexes it from function_app."""
    import azure.functions as func
    from azure.functions.timer import TimerRequest

    import function_app

    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    user_function = functions["nightly_sync"].get_user_function()

    def fire(_: Any = None) -> None:
        timer: func.TimerRequest = TimerRequest(past_due=False)
        user_function(timer)

    return fire


def _run(
    name: str, standin: Standin, timer: Callable[[Any], None]
) -> Mapping[str, Any]:
    from sync_core.runstore import RunStore
    from sync_core.settings import Settings

    timer(None)
    with RunStore(Settings.from_environ(os.environ).storage) as store:
        report = store.latest()
    if report is None:
        raise SystemExit(f"{name}: the run stored no report")
    counts = ", ".join(f"{n} {action}" for action, n in report["counts"].items() if n)
    print(f"{name}: {report['status']}: {counts}")
    return report


def _public_manifest_gets(stats: Mapping[str, Any]) -> int:
    public = stats.get("public", {})
    return sum(int(counts.get("manifest_get", 0)) for counts in public.values())


def _compare_with_skopeo(standin: Standin, state_dir: Path) -> list[str]:
    """Reads every image's manifest on both sides with skopeo; digests must match."""
    from sync_core.imagelist import parse_image_list

    cert_dir = state_dir / "skopeo-certs"
    cert_dir.mkdir(exist_ok=True)
    (cert_dir / "ca.crt").write_bytes(standin.ca_cert.read_bytes())
    acr_backend = standin.acr_backend.removeprefix("http://")
    entries = parse_image_list(EXAMPLE_IMAGE_LIST.read_bytes()).entries
    failures = []
    print("skopeo inspect --raw, public side and ACR side:")
    for entry in entries:
        source, target = entry.source, entry.target
        port = standin.ports.public[source.registry]
        public = _skopeo_digest(
            f"docker://127.0.0.1:{port}/{source.repository}:{source.tag}",
            ["--cert-dir", str(cert_dir)],
        )
        acr = _skopeo_digest(
            f"docker://{acr_backend}/{target.repository}:{target.tag}",
            ["--tls-verify=false"],
        )
        same = "same" if public == acr else "DIFFERENT"
        print(f"  {same:<9} {public}  {source} => {target}")
        if public != acr:
            failures.append(f"{target} differs from {source}: {acr} != {public}")
    return failures


def _skopeo_digest(image: str, options: list[str]) -> str:
    command = ["skopeo", "inspect", "--raw", *options, image]
    raw = subprocess.run(command, check=True, capture_output=True, timeout=60).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _expect(failures: list[str], condition: bool, what: str) -> None:
    if not condition:
        failures.append(what)


if __name__ == "__main__":
    sys.exit(main())
