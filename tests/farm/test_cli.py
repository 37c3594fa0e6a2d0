"""The `farm` CLI: consistent help, and one clear line on stderr with exit code 2 for bad input."""

import subprocess
import sys

import pytest

from farm.cli import build_parser, main

COMMANDS = [
    [],
    ["quickstart"],
    ["train"],
    ["registry"],
    ["registry", "ls"],
    ["registry", "show"],
    ["registry", "promote"],
    ["registry", "ui"],
    ["campaign"],
    ["campaign", "submit"],
    ["campaign", "status"],
    ["campaign", "ls"],
    ["campaign", "cancel"],
    ["campaign", "resume"],
    ["evaluate"],
    ["data"],
    ["data", "showers"],
    ["data", "jets"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "farm" for c in COMMANDS])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: farm") and len(text.splitlines()) > 3


def run(args, tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-m", "farm.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FARM_HOME": str(tmp_path / "home"),
            **env,
        },
        timeout=120,
    )


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("farm: error: ")
    return lines[0]


def test_bad_input_gets_one_line(tmp_path):
    (tmp_path / "malformed.yaml").write_text("kind: train\nname: [x\n")
    (tmp_path / "unknown.yaml").write_text("kind: train\nname: x\noptim: {lrr: 1}\n")
    (tmp_path / "negative.yaml").write_text(
        "kind: campaign\nname: c\nmodel: m@candidate\nevents: -3\n"
        "conditions: {distribution: uniform, min: 1, max: 2}\n"
    )
    cases = [
        (["train", "absent.yaml"], "absent.yaml: job file not found"),
        (["train", "malformed.yaml"], "malformed.yaml: malformed YAML at line 3, column 1"),
        (["train", "unknown.yaml"], "unknown.yaml: unknown key 'optim.lrr' (allowed:"),
        (["campaign", "submit", "negative.yaml"], "events: Input should be greater than 0"),
        (["campaign", "status", "nope"], "campaign 'nope' not found"),
        (["registry", "show", "nope@candidate"], "model 'nope' not found in the registry"),
        (["quickstart", "--campaign-events", "0"], "--campaign-events must be positive"),
    ]
    for args, message in cases:
        assert message in one_error_line(run(args, tmp_path)), args
    # nothing half-written: no job produced a final output
    assert not (tmp_path / "home" / "campaigns").exists()


def test_unreachable_object_store_is_one_line(tmp_path):
    env = {"AWS_EC2_METADATA_DISABLED": "true", "FARM_S3_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run(["evaluate", "s3://nobucket/gen.h5", "s3://nobucket/ref.h5"], tmp_path, **env)
    assert one_error_line(result).startswith("farm: error: storage: ")


def test_unwritable_store(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_error_line(run(["quickstart"], tmp_path, FARM_HOME=str(blocker / "home")))
    assert "store is not writable" in line


def test_main_returns_exit_code(farm_home, capsys):
    assert main(["registry", "ls"]) == 0
    assert "no registered models yet" in capsys.readouterr().out
