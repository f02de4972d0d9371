"""The offline validator: exit codes, and each output format a pipeline reads."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sync_core.imagelist import DEFAULT_LIMITS, RULES, Limits, Problem
from sync_core.validation import (
    FORMATS,
    ValidationResult,
    render,
    validate,
    validate_command,
)

D = "a" * 64
VALID = f"alpine:3.20 => mirror/alpine\nquay.io/app@sha256:{D} => app\n"
INVALID = "alpine:3.20 => mirror/alpine\nnginx:1.27#x => nginx\n"
ROOT = Path(__file__).parent.parent


@pytest.fixture
def valid_file(tmp_path: Path) -> Path:
    path = tmp_path / "images.txt"
    path.write_text(VALID)
    return path


@pytest.fixture
def invalid_file(tmp_path: Path) -> Path:
    path = tmp_path / "images.txt"
    path.write_text(INVALID)
    return path


@pytest.mark.parametrize("output_format", FORMATS)
def test_a_valid_list_exits_0_in_every_format(
    valid_file: Path, output_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = validate_command(str(valid_file), output_format, None)

    assert status == 0
    assert capsys.readouterr().out.endswith("\n")


@pytest.mark.parametrize("output_format", FORMATS)
def test_an_invalid_list_exits_1_in_every_format(
    invalid_file: Path, output_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = validate_command(str(invalid_file), output_format, None)

    assert status == 1
    assert "reference-invalid-character" in capsys.readouterr().out


@pytest.mark.parametrize("output_format", FORMATS)
def test_an_unreadable_file_exits_2_and_says_so(
    tmp_path: Path, output_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = validate_command(str(tmp_path / "missing.txt"), output_format, None)

    assert status == 2
    assert "file-unreadable" in capsys.readouterr().out


def test_an_unknown_format_is_a_usage_error(
    valid_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = validate_command(str(valid_file), "xml", None)

    assert status == 2
    assert "unknown format 'xml'" in capsys.readouterr().err


def test_a_dash_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(INVALID.encode())))

    status = validate_command("-", "text", None)

    assert status == 1
    assert capsys.readouterr().out.startswith("<stdin>:2:11: error: ")


def test_the_login_server_allows_this_registry_as_target_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "images.txt"
    path.write_text("alpine => myacr.azurecr.io/mirror/alpine\n")

    without = validate_command(str(path), "text", None)
    with_server = validate_command(str(path), "text", "myacr.azurecr.io")

    assert (without, with_server) == (1, 0)
    assert "target-registry-not-allowed" in capsys.readouterr().out


def test_an_oversized_file_is_read_only_past_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "images.txt"
    path.write_bytes(b"#" * (DEFAULT_LIMITS.max_bytes + 4096))

    status = validate_command(str(path), "text", None)

    assert status == 1
    assert "list-too-large" in capsys.readouterr().out


def test_text_names_file_line_column_severity_rule_and_text() -> None:
    result = validate(INVALID)

    output = render(result, "text", "images.txt")

    assert output == (
        "images.txt:2:11: error: reference-invalid-character: source: '#' is not "
        "part of a reference; a comment needs a space before '#': 'nginx:1.27#x'\n"
        "images.txt: invalid, 1 error, 0 warnings; nothing in it will be imported\n"
    )


def test_text_for_a_valid_list_with_a_warning() -> None:
    result = validate("alpine\nalpine\n")

    output = render(result, "text", "images.txt")

    assert output.splitlines() == [
        "images.txt:2: warning: entry-duplicate: repeats line 1 "
        "(docker.io/library/alpine:latest => library/alpine:latest); it counts "
        "once: 'alpine'",
        "images.txt: valid, 1 entry, 1 warning",
    ]


def test_json_holds_errors_warnings_and_normalised_entries() -> None:
    result = validate(VALID + "alpine:3.20 => mirror/alpine\n")

    document = json.loads(render(result, "json", "images.txt"))

    assert document["file"] == "images.txt"
    assert document["valid"] is True
    assert document["errors"] == []
    assert [w["rule"] for w in document["warnings"]] == ["entry-duplicate"]
    assert document["entries"] == [
        {
            "line": 1,
            "source": {
                "reference": "docker.io/library/alpine:3.20",
                "registry": "docker.io",
                "repository": "library/alpine",
                "tag": "3.20",
                "digest": None,
            },
            "target": {
                "reference": "mirror/alpine:3.20",
                "repository": "mirror/alpine",
                "tag": "3.20",
            },
        },
        {
            "line": 2,
            "source": {
                "reference": f"quay.io/app@sha256:{D}",
                "registry": "quay.io",
                "repository": "app",
                "tag": None,
                "digest": f"sha256:{D}",
            },
            "target": {"reference": "app", "repository": "app", "tag": None},
        },
    ]


def test_json_for_an_invalid_list_has_no_entries() -> None:
    result = validate(INVALID)

    document = json.loads(render(result, "json", "-"))

    assert document["file"] is None
    assert document["valid"] is False
    assert document["entries"] == []
    assert document["errors"] == [
        {
            "line": 2,
            "column": 11,
            "rule": "reference-invalid-character",
            "text": "nginx:1.27#x",
            "message": "source: '#' is not part of a reference; a comment needs a "
            "space before '#': 'nginx:1.27#x'",
        }
    ]


def test_azure_devops_logging_commands() -> None:
    result = validate(INVALID + "alpine:3.20 => mirror/alpine\n")

    output = render(result, "azure-devops", "lists/images.txt")

    assert output.splitlines() == [
        "##vso[task.logissue type=error;sourcepath=lists/images.txt;linenumber=2;"
        "columnnumber=11;code=reference-invalid-character]reference-invalid-character: "
        "source: '#' is not part of a reference; a comment needs a space before '#': "
        "'nginx:1.27#x'",
        "##vso[task.logissue type=warning;sourcepath=lists/images.txt;linenumber=3;"
        "code=entry-duplicate]entry-duplicate: repeats line 1 "
        "(docker.io/library/alpine:3.20 => mirror/alpine:3.20); it counts once: "
        "'alpine:3.20 => mirror/alpine'",
        "lists/images.txt: invalid, 1 error, 1 warning; nothing in it will be imported",
    ]


def test_github_workflow_commands() -> None:
    result = validate(INVALID)

    output = render(result, "github", "lists/images.txt")

    assert output.splitlines() == [
        "::error file=lists/images.txt,line=2,col=11,title=reference-invalid-character"
        "::source: '#' is not part of a reference; a comment needs a space before "
        "'#': 'nginx:1.27#x'",
        "lists/images.txt: invalid, 1 error, 0 warnings; "
        "nothing in it will be imported",
    ]


def test_a_problem_without_a_line_leaves_out_line_and_column() -> None:
    result = validate("#" * 50, limits=Limits(max_bytes=10))

    azure = render(result, "azure-devops", "images.txt").splitlines()[0]
    github = render(result, "github", "images.txt").splitlines()[0]
    text = render(result, "text", "images.txt").splitlines()[0]

    assert azure.startswith(
        "##vso[task.logissue type=error;sourcepath=images.txt;code=list-too-large]"
    )
    assert github.startswith("::error file=images.txt,title=list-too-large::")
    assert text.startswith("images.txt: error: list-too-large: ")


def test_command_properties_and_messages_are_escaped() -> None:
    problem = Problem(1, 2, "rule", "x", "100% bad;\r\nnext]: a,b")
    result = ValidationResult((), (problem,), ())

    azure = render(result, "azure-devops", "odd;dir]/a%b.txt").splitlines()[0]
    github = render(result, "github", "odd,dir:/a%b.txt").splitlines()[0]

    assert azure == (
        "##vso[task.logissue type=error;sourcepath=odd%3Bdir%5D/a%AZP25b.txt;"
        "linenumber=1;columnnumber=2;code=rule]rule: 100%AZP25 bad;%0D%0Anext]: a,b"
    )
    assert github == (
        "::error file=odd%2Cdir%3A/a%25b.txt,line=1,col=2,title=rule"
        "::100%25 bad;%0D%0Anext]: a,b"
    )


def test_render_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(validate(VALID), "yaml", "images.txt")


def test_every_rule_a_problem_can_cite_is_in_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    validate_command(str(tmp_path / "missing.txt"), "json", None)

    document = json.loads(capsys.readouterr().out)

    assert [error["rule"] for error in document["errors"]] == ["file-unreadable"]
    assert "file-unreadable" in RULES


def run_module(*arguments: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync_core", *arguments],
        cwd=ROOT,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("arguments", "stdin", "status"),
    [
        pytest.param(("validate", "examples/images.txt"), b"", 0, id="valid: 0"),
        pytest.param(
            ("validate", "-", "--format", "github"),
            INVALID.encode(),
            1,
            id="invalid: 1",
        ),
        pytest.param(("validate", "no/such/list.txt"), b"", 2, id="unreadable: 2"),
        pytest.param(
            ("validate", "examples/images.txt", "--format", "xml"),
            b"",
            2,
            id="usage: 2",
        ),
        pytest.param(("validate",), b"", 2, id="no file: 2"),
    ],
)
def test_python_m_sync_core_validate_exits_with_the_status(
    arguments: tuple[str, ...], stdin: bytes, status: int
) -> None:
    completed = run_module(*arguments, stdin=stdin)

    assert completed.returncode == status, completed.stderr


def test_python_m_sync_core_validate_prints_github_annotations() -> None:
    completed = run_module(
        "validate", "-", "--format", "github", stdin=INVALID.encode()
    )

    assert completed.stdout.startswith(
        "::error line=2,col=11,title=reference-invalid-character::"
    )


def test_the_validator_runs_on_a_bare_python_with_no_packages() -> None:
    """Pipelines lint the list with one line and no install step."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    completed = subprocess.run(
        [sys.executable, "-S", "-m", "sync_core", "validate", "examples/images.txt"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "valid, 7 entries" in completed.stdout
