"""The pipelines in ``pipelines/``, and the client they run.

The definitions are read as YAML and their steps' scripts are run for real under
bash: the project's own commands with the interpreter alone (no third-party
package), and ``az`` replaced by a stand-in on ``PATH`` that publishes to Azurite and
names a loopback https server carrying the app's own functions and run queue.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.storage.blob import BlobServiceClient

from standin.harness import Standin
from sync_core import api, cli
from sync_core import client as api_client
from tests.functions_host import FunctionsHost, Loopback, run_queue

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "pipelines" / "github-actions.yml"
AZURE = ROOT / "pipelines" / "azure-pipelines.yml"
PIPELINES = [pytest.param(GITHUB, id="github"), pytest.param(AZURE, id="azure")]

CAINJECTOR = "quay.io/jetstack/cert-manager-cainjector:v1.15.2"
WEBHOOK = "quay.io/jetstack/cert-manager-webhook:v1.15.2"
# The variables the Azure definition takes from its variable group.
AZURE_GROUP_VARIABLES = {
    "STORAGE_ACCOUNT",
    "LIST_CONTAINER",
    "LIST_BLOB",
    "APP_RESOURCE_GROUP",
    "APP_NAME",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a job: a script to run, or an action or task it uses."""

    name: str
    script: str | None
    uses: str | None
    inputs: Mapping[str, Any]


def load(path: Path) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def jobs(path: Path) -> dict[str, list[Step]]:
    """Each job's steps, by job name, for either kind of definition."""
    document = load(path)
    if path == GITHUB:
        return {
            name: [_github_step(step) for step in job["steps"]]
            for name, job in document["jobs"].items()
        }
    return {
        job["job"]: [_azure_step(step) for step in job["steps"]]
        for stage in document["stages"]
        for job in stage["jobs"]
    }


def _github_step(step: Mapping[str, Any]) -> Step:
    name = str(step.get("name") or step.get("uses"))
    return Step(name, step.get("run"), step.get("uses"), step.get("with") or {})


def _azure_step(step: Mapping[str, Any]) -> Step:
    if "script" in step:
        return Step(step["displayName"], step["script"], None, {})
    if "checkout" in step:
        return Step("checkout", None, "checkout", {})
    inputs = step.get("inputs") or {}
    script = inputs.get("inlineScript")
    return Step(step.get("displayName", step["task"]), script, step["task"], inputs)


def scripts(path: Path, job: str) -> list[str]:
    return [step.script for step in jobs(path)[job] if step.script is not None]


def defined_variables(path: Path) -> dict[str, str]:
    """The variables the definition gives its scripts, as a runner would."""
    document = load(path)
    if path == GITHUB:
        return {name: str(value) for name, value in document["env"].items()}
    return {
        item["name"]: str(item["value"])
        for item in document["variables"]
        if "name" in item
    }


def project_commands(path: Path) -> list[list[str]]:
    """Every ``python -m sync_core...`` command line in the definition's scripts."""
    commands = []
    for steps in jobs(path).values():
        for step in steps:
            for line in (step.script or "").splitlines():
                if "python -m sync_core" in line:
                    commands.append(shlex.split(line))
    return commands


# The definitions themselves.


@pytest.mark.parametrize("path", PIPELINES)
def test_the_definition_parses_as_yaml_with_the_three_jobs(path: Path) -> None:
    steps = jobs(path)

    assert set(steps) == {"validate", "preview", "sync"}


def test_github_validates_pull_requests_and_syncs_main_only() -> None:
    document = load(GITHUB)
    # YAML 1.1 reads the key "on" as true.
    triggers: dict[str, Any] = document.get("on") or document[True]

    assert triggers["pull_request"]["branches"] == ["main"]
    assert triggers["push"]["branches"] == ["main"]
    assert document["permissions"] == {"contents": "read"}
    sync = document["jobs"]["sync"]
    assert sync["needs"] == "validate"
    assert "github.event_name != 'pull_request'" in sync["if"]
    assert "refs/heads/main" in sync["if"]
    preview = document["jobs"]["preview"]
    assert "github.event_name == 'pull_request'" in preview["if"]
    for name in ("sync", "preview"):
        assert document["jobs"][name]["permissions"]["id-token"] == "write"
    assert "permissions" not in document["jobs"]["validate"]


def test_azure_validates_pull_requests_and_syncs_main_only() -> None:
    document = load(AZURE)
    stages = {stage["stage"]: stage for stage in document["stages"]}

    assert document["pr"]["branches"]["include"] == ["main"]
    assert document["trigger"]["branches"]["include"] == ["main"]
    condition = " ".join(stages["sync"]["condition"].split())
    assert "ne(variables['Build.Reason'], 'PullRequest')" in condition
    assert "eq(variables['Build.SourceBranch'], 'refs/heads/main')" in condition
    assert stages["sync"]["dependsOn"] == "validate"
    azure_cli = [
        step
        for steps in jobs(AZURE).values()
        for step in steps
        if step.uses == "AzureCLI@2"
    ]
    assert len(azure_cli) == 3
    for step in azure_cli:
        # A service connection is chosen when the pipeline is compiled.
        assert step.inputs["azureSubscription"] == "${{ parameters.serviceConnection }}"
        assert step.inputs["scriptType"] == "bash"


@pytest.mark.parametrize("path", PIPELINES)
def test_no_secret_is_in_the_definition(path: Path) -> None:
    text = path.read_text(encoding="utf-8")

    for credential in (
        "secrets.",
        "client-secret",
        "--account-key",
        "--sas-token",
        "--connection-string",
        "AccountKey=",
        "password",
    ):
        assert credential not in text, credential
    [upload] = [line for line in text.splitlines() if "az storage blob upload" in line]
    assert "--auth-mode login" in upload


def test_github_signs_in_with_the_workflows_oidc_token() -> None:
    logins = [
        step
        for steps in jobs(GITHUB).values()
        for step in steps
        if (step.uses or "").startswith("azure/login@")
    ]

    assert len(logins) == 2
    for login in logins:
        assert set(login.inputs) == {"client-id", "tenant-id", "subscription-id"}
        assert all(value.startswith("${{ vars.") for value in login.inputs.values())


@pytest.mark.parametrize("path", PIPELINES)
def test_every_variable_a_script_reads_is_defined(path: Path) -> None:
    defined = set(defined_variables(path)) | {"app_url", "ACRSYNC_FUNCTION_KEY"}
    if path == AZURE:
        header = path.read_text(encoding="utf-8").split("parameters:")[0]
        assert all(name in header for name in AZURE_GROUP_VARIABLES)
        defined |= AZURE_GROUP_VARIABLES

    used = {
        name
        for steps in jobs(path).values()
        for step in steps
        for name in re.findall(r"\$\{?([A-Za-z_]\w*)", step.script or "")
    }

    assert used <= defined, used - defined


@pytest.mark.parametrize("path", PIPELINES)
def test_every_project_command_exists_and_accepts_its_arguments(path: Path) -> None:
    commands = project_commands(path)

    assert {tuple(command[:4]) for command in commands} == {
        ("python", "-m", "sync_core", "validate"),
        ("python", "-m", "sync_core.client", "plan"),
        ("python", "-m", "sync_core.client", "sync"),
    }
    for command in commands:
        parser = cli._parser() if command[2] == "sync_core" else api_client._parser()
        # Variables stand as they are; each one only fills one argument.
        arguments = parser.parse_args(command[3:])
        assert arguments.command == command[3]


# The steps, run: a bash with the interpreter, a stand-in az, and the app on loopback.


FAKE_AZ = """\
#!{python}
# A stand-in for the Azure CLI: the three commands the pipelines run, checked.
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")


def option(name):
    return args[args.index(name) + 1]


def expect(name, value):
    if option(name) != value:
        sys.exit(f"az: {{name}} must be {{value!r}}, got {{option(name)!r}}")


if args[:3] == ["storage", "blob", "upload"]:
    expect("--auth-mode", "login")
    expect("--account-name", os.environ["FAKE_AZ_ACCOUNT"])
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(os.environ["FAKE_AZ_STORAGE"]) as s:
        container = s.get_container_client(option("--container-name"))
        if not container.exists():
            container.create_container()
        data = Path(option("--file")).read_bytes()
        container.upload_blob(option("--name"), data, overwrite="--overwrite" in args)
elif args[:2] == ["functionapp", "show"]:
    expect("--resource-group", os.environ["FAKE_AZ_GROUP"])
    expect("--name", os.environ["FAKE_AZ_APP"])
    expect("--query", "defaultHostName")
    expect("--output", "tsv")
    print(os.environ["FAKE_AZ_HOST"])
elif args[:3] == ["functionapp", "keys", "list"]:
    expect("--resource-group", os.environ["FAKE_AZ_GROUP"])
    expect("--name", os.environ["FAKE_AZ_APP"])
    expect("--query", "functionKeys.default")
    expect("--output", "tsv")
    print(os.environ["FAKE_AZ_KEY"])
else:
    sys.exit(f"az: the stand-in does not know {{args}}")
"""


@dataclass
class Runner:
    """Runs a job's scripts as a pipeline agent would, in a checkout of its own."""

    workdir: Path
    environ: dict[str, str]

    def run(
        self, path: Path, job: str, image_list: str
    ) -> subprocess.CompletedProcess[str]:
        (self.workdir / "images.txt").write_text(image_list, encoding="utf-8")
        # Values the runner evaluates (``${{ vars.X }}``) are the agent's to give.
        literal = {
            name: value
            for name, value in defined_variables(path).items()
            if "${{" not in value
        }
        environ = {**literal, **self.environ}
        stdout, stderr, returncode = [], [], 0
        for script in scripts(path, job):
            completed = subprocess.run(
                ["bash", "-e", "-c", script],
                cwd=self.workdir,
                env=environ,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            stdout.append(completed.stdout)
            stderr.append(completed.stderr)
            returncode = completed.returncode
            if returncode != 0:
                break
        return subprocess.CompletedProcess(
            [job], returncode, "".join(stdout), "".join(stderr)
        )

    def az_calls(self) -> list[list[str]]:
        log = Path(self.environ["FAKE_AZ_LOG"])
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


def agent(tmp_path: Path, extra: Mapping[str, str] | None = None) -> Runner:
    """A bash with ``python`` (the interpreter alone, no site-packages) and ``az``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    az = bin_dir / "az"
    az.write_text(FAKE_AZ.format(python=sys.executable))
    for tool in (python, az):
        tool.chmod(0o755)
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    environ = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "FAKE_AZ_LOG": str(tmp_path / "az.log"),
        **(extra or {}),
    }
    return Runner(workdir, environ)


@pytest.mark.parametrize("path", PIPELINES)
@pytest.mark.parametrize(
    ("image_list", "returncode", "annotation"),
    [
        pytest.param(f"{CAINJECTOR} => cainjector\n", 0, None, id="valid"),
        pytest.param(
            f"{CAINJECTOR} => cainjector\nquay.io/Jetstack/X:1 => x\n",
            1,
            {
                GITHUB: "::error file=images.txt,line=2,col=9,"
                "title=reference-repository-uppercase::",
                AZURE: "##vso[task.logissue type=error;sourcepath=images.txt;"
                "linenumber=2;columnnumber=9;code=reference-repository-uppercase]",
            },
            id="an uppercase repository",
        ),
    ],
)
def test_the_pull_request_check_validates_with_annotations(
    path: Path,
    image_list: str,
    returncode: int,
    annotation: Mapping[Path, str] | None,
    tmp_path: Path,
) -> None:
    runner = agent(tmp_path)

    completed = runner.run(path, "validate", image_list)

    assert completed.returncode == returncode, completed.stderr
    if annotation is not None:
        assert annotation[path] in completed.stdout
    assert runner.az_calls() == []


# The main branch and the pull request preview, against the app on loopback.


@pytest.fixture
def app_on_loopback(
    clean_standin: Standin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Runner, Loopback]]:
    """The app's functions on https://127.0.0.1, and an agent that reaches them."""
    settings = clean_standin.app_settings()
    settings["ACRSYNC_REPORT_CONTAINER"] = "reports-" + uuid.uuid4().hex[:12]
    settings["ACRSYNC_LIST_BLOB"] = "images-" + uuid.uuid4().hex[:8] + ".txt"
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    # The app asks pollers back after a second, so the tests do not wait long.
    monkeypatch.setattr(api, "RETRY_AFTER_SECONDS", 1)
    key = uuid.uuid4().hex
    queue = run_queue(clean_standin.azurite_connection_string)
    loopback = Loopback(
        FunctionsHost(),
        queue,
        cert_chain=Path(clean_standin.config["server_cert"]),
        private_key=Path(clean_standin.config["server_key"]),
        key=key,
    )
    runner = agent(
        tmp_path,
        {
            "SSL_CERT_FILE": str(clean_standin.ca_cert),
            "STORAGE_ACCOUNT": "devstoreaccount1",
            "LIST_CONTAINER": settings["ACRSYNC_LIST_CONTAINER"],
            "LIST_BLOB": settings["ACRSYNC_LIST_BLOB"],
            "APP_RESOURCE_GROUP": "rg-image-sync-app",
            "APP_NAME": "image-sync-app",
            "FAKE_AZ_ACCOUNT": "devstoreaccount1",
            "FAKE_AZ_STORAGE": clean_standin.azurite_connection_string,
            "FAKE_AZ_GROUP": "rg-image-sync-app",
            "FAKE_AZ_APP": "image-sync-app",
            "FAKE_AZ_HOST": loopback.netloc,
            "FAKE_AZ_KEY": key,
        },
    )
    try:
        with loopback.running():
            yield runner, loopback
        assert loopback.errors == []
    finally:
        queue.clear_messages()
        queue.close()


def published(standin: Standin) -> bytes:
    with BlobServiceClient.from_connection_string(
        standin.azurite_connection_string
    ) as service:
        blob = service.get_blob_client(
            os.environ["ACRSYNC_LIST_CONTAINER"], os.environ["ACRSYNC_LIST_BLOB"]
        )
        return blob.download_blob().readall()


@pytest.mark.parametrize("path", PIPELINES)
def test_main_publishes_the_list_syncs_and_passes_on_a_run_that_succeeds(
    path: Path,
    clean_standin: Standin,
    app_on_loopback: tuple[Runner, Loopback],
) -> None:
    runner, loopback = app_on_loopback
    prefix = "t" + uuid.uuid4().hex[:8]
    image_list = f"{CAINJECTOR} => {prefix}/cainjector\n"

    completed = runner.run(path, "sync", image_list)

    assert completed.returncode == 0, completed.stderr
    assert published(clean_standin) == image_list.encode()
    assert "sync succeeded: 1 imported" in completed.stdout
    assert f"imported  {CAINJECTOR} => {prefix}/cainjector:v1.15.2" in completed.stdout
    assert runner.az_calls()[0][:3] == ["storage", "blob", "upload"]
    calls = [(method, status) for method, _, status in loopback.requests]
    assert calls[0] == ("POST", 202)
    assert set(calls[1:]) == {("GET", 200)}
    landed = clean_standin.acr_digest(f"{prefix}/cainjector", "v1.15.2")
    assert landed is not None
    assert landed in completed.stdout


@pytest.mark.parametrize("path", PIPELINES)
@pytest.mark.parametrize(
    ("missing_entries", "status"),
    [
        pytest.param(1, "partial", id="one entry of two failed"),
        pytest.param(2, "failed", id="every entry failed"),
    ],
)
def test_main_fails_the_pipeline_when_the_run_fails(
    path: Path,
    app_on_loopback: tuple[Runner, Loopback],
    missing_entries: int,
    status: str,
) -> None:
    runner, _ = app_on_loopback
    prefix = "t" + uuid.uuid4().hex[:8]
    entries = [
        f"quay.io/jetstack/cert-manager-webhook:v0.0.{n}-missing => {prefix}/m{n}"
        for n in range(missing_entries)
    ]
    entries += [f"{WEBHOOK} => {prefix}/webhook"] * (2 - missing_entries)
    image_list = "\n".join(entries) + "\n"

    completed = runner.run(path, "sync", image_list)

    assert completed.returncode == 1, completed.stderr
    assert f"sync {status}: " in completed.stdout
    assert "failed    quay.io/jetstack/cert-manager-webhook:v0.0.0-missing" in (
        completed.stdout
    )


@pytest.mark.parametrize("path", PIPELINES)
def test_a_pull_request_previews_its_plan(
    path: Path,
    clean_standin: Standin,
    app_on_loopback: tuple[Runner, Loopback],
) -> None:
    runner, _ = app_on_loopback
    prefix = "t" + uuid.uuid4().hex[:8]

    completed = runner.run(path, "preview", f"{WEBHOOK} => {prefix}/webhook\n")

    assert completed.returncode == 0, completed.stderr
    assert "plan succeeded: 1 import" in completed.stdout
    assert clean_standin.control.stats()["arm"]["import"] == 0
    assert all(call[:3] != ["storage", "blob", "upload"] for call in runner.az_calls())


# The client on its own, against a scripted server of the test's own.


@dataclass(frozen=True, slots=True)
class Canned:
    """One answer the scripted server gives, to the request it expects."""

    method: str
    path: str
    status: int
    document: Any = None
    headers: Mapping[str, str] | None = None
    repeat: bool = False


class Scripted:
    """A loopback http server that answers a script of requests in order."""

    def __init__(self, script: list[Canned]) -> None:
        self.script = list(script)
        self.seen: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Scripted:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def next_answer(self, method: str, path: str) -> Canned:
        with self._lock:
            canned = self.script[0]
            if not canned.repeat:
                self.script.pop(0)
        assert (canned.method, canned.path) == (method, path), (method, path)
        return canned

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                scripted.seen.append(
                    (self.command, self.path, self.headers.get("x-functions-key"))
                )
                canned = scripted.next_answer(self.command, self.path)
                body = b"" if canned.document is None else json.dumps(canned.document)
                data = body.encode() if isinstance(body, str) else body
                self.send_response(canned.status)
                for name, value in (canned.headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        return Handler


def report(run_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "mode": "sync",
        "status": status,
        "counts": {"imported": 1, "failed": 0},
        "entries": [],
        **fields,
    }


def run_client(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = api_client.main(arguments, environ={"ACRSYNC_FUNCTION_KEY": "the-key"})
    captured = capsys.readouterr()
    return code, captured.out, captured.err


FAST = ["--poll-seconds", "0.05"]


def test_the_client_waits_for_a_running_sync_then_starts_its_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    already = {
        "error": {
            "code": "already-running",
            "message": "only one sync at a time",
            "run_id": "other",
            "status_url": "/api/runs/other",
        }
    }
    accepted = {"run_id": "mine", "mode": "sync", "status": "queued"}
    script = [
        Canned("POST", "/api/sync", 409, already),
        Canned("GET", "/api/runs/other", 200, report("other", "running")),
        Canned("GET", "/api/runs/other", 200, report("other", "succeeded")),
        Canned("POST", "/api/sync", 202, accepted, {"Location": "/api/runs/mine"}),
        Canned("GET", "/api/runs/mine", 200, report("mine", "queued")),
        Canned("GET", "/api/runs/mine", 503, {"error": {"code": "x", "message": "y"}}),
        Canned("GET", "/api/runs/mine", 200, report("mine", "succeeded")),
    ]

    with Scripted(script) as server:
        code, out, err = run_client(["sync", "--app-url", server.url, *FAST], capsys)

    assert code == 0, err
    assert out.strip().endswith("sync succeeded: 1 imported, 0 failed")
    assert "run other is going; waiting for it to end first" in err
    assert server.script == []
    assert {key for _, _, key in server.seen} == {"the-key"}


def test_the_client_starts_again_when_its_queued_run_lost_the_lock(
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = {"run_id": "mine", "mode": "sync", "status": "queued"}
    second = {"run_id": "again", "mode": "sync", "status": "queued"}
    script = [
        Canned("POST", "/api/sync", 202, first, {"Location": "/api/runs/mine"}),
        Canned(
            "GET",
            "/api/runs/mine",
            200,
            report("mine", "refused", blocked_by="timer-run"),
        ),
        Canned("GET", "/api/runs/timer-run", 200, report("timer-run", "succeeded")),
        Canned("POST", "/api/sync", 202, second, {"Location": "/api/runs/again"}),
        Canned("GET", "/api/runs/again", 200, report("again", "succeeded")),
    ]

    with Scripted(script) as server:
        code, out, err = run_client(["sync", "--app-url", server.url, *FAST], capsys)

    assert code == 0, err
    assert "run timer-run took the lock first; waiting for it" in err
    assert out.strip().endswith("sync succeeded: 1 imported, 0 failed")
    assert server.script == []


@pytest.mark.parametrize(
    ("status", "code"),
    [("succeeded", 0), ("partial", 1), ("failed", 1), ("refused", 1)],
)
def test_the_client_exits_non_zero_unless_the_run_succeeded(
    status: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    accepted = {"run_id": "r", "mode": "sync", "status": "queued"}
    script = [
        Canned("POST", "/api/sync", 202, accepted, {"Location": "/api/runs/r"}),
        Canned("GET", "/api/runs/r", 200, report("r", status, message="why")),
    ]

    with Scripted(script) as server:
        exit_code, out, _ = run_client(["sync", "--app-url", server.url], capsys)

    assert exit_code == code
    assert f"sync {status}: " in out


def test_a_wrong_function_key_stops_the_client_with_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Scripted([Canned("POST", "/api/sync", 401)]) as server:
        code, _, err = run_client(["sync", "--app-url", server.url], capsys)

    assert code == 2
    assert "401" in err


def test_the_client_gives_up_at_its_timeout_naming_the_status_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    accepted = {"run_id": "slow", "mode": "sync", "status": "queued"}
    script = [
        Canned("POST", "/api/sync", 202, accepted, {"Location": "/api/runs/slow"}),
        Canned("GET", "/api/runs/slow", 200, report("slow", "running"), repeat=True),
    ]

    with Scripted(script) as server:
        code, _, err = run_client(
            ["sync", "--app-url", server.url, "--timeout", "0.3", *FAST], capsys
        )

    assert code == 2
    assert f"{server.url}/api/runs/slow" in err


def test_the_key_goes_to_no_host_but_the_apps() -> None:
    client = api_client.ApiClient("https://app.example", "the-key")
    elsewhere = api_client.Reply(
        202, {"location": "https://elsewhere.example/api/runs/r"}, {}, ""
    )
    here = api_client.Reply(202, {"location": "/api/runs/r"}, {}, "")

    assert client.status_url(elsewhere, "r") == "https://app.example/api/runs/r"
    assert client.status_url(here, "r") == "https://app.example/api/runs/r"


def test_a_plan_of_an_invalid_list_exits_1_with_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image_list = tmp_path / "images.txt"
    image_list.write_text("a => b\nquay.io/X:1 => x\n")
    problem = {
        "line": 2,
        "column": 9,
        "rule": "reference-repository-uppercase",
        "text": "quay.io/X:1",
        "message": "repository names are lowercase",
    }
    invalid = {
        "error": {
            "code": "invalid-image-list",
            "message": "the image list is invalid, 1 error",
            "errors": [problem],
            "warnings": [],
        }
    }

    with Scripted([Canned("POST", "/api/plan", 422, invalid)]) as server:
        code, out, _ = run_client(
            ["plan", "--app-url", server.url, "--list", str(image_list)], capsys
        )

    assert code == 1
    assert f"{image_list}:2:9: reference-repository-uppercase: " in out


def test_the_client_refuses_an_app_url_that_is_not_http(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_client(["sync", "--app-url", "file:///etc/passwd"], capsys)

    assert code == 2
    assert "--app-url" in err


def test_every_test_the_readme_names_for_a_pipeline_step_exists() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### How the tests hold it") :]
    section = section[: section.index("\n## ")]
    tests = (ROOT / "tests" / "test_pipelines.py").read_text(encoding="utf-8")

    named = set(re.findall(r"`(test_\w+)`", section))

    assert named
    assert {name for name in named if f"def {name}(" not in tests} == set()
