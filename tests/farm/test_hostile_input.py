"""Hostile job files get one error line naming the bound, within bounded memory and time.

Each file is given to the real CLI in a subprocess whose address space is capped
(RLIMIT_AS) and which must answer within a timeout: a file that made farm allocate without bound
or parse for minutes fails the test instead of the machine.
"""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

MEMORY_LIMIT = 3 * 2**29  # 1.5 GiB of address space: farm's CLI with torch imported needs < 1 GiB
TIMEOUT = 120


def _alias_bomb(indent: str) -> str:
    """Eleven levels of ten aliases each: 10^11 nodes when expanded, 700 bytes on disk."""
    lines = [f"{indent}a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"{indent}a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


CAMPAIGN = "kind: campaign\nname: c\nmodel: m@candidate\n"
UNIFORM = "conditions: {distribution: uniform, min: 1000, max: 2000}\n"
HOSTILE = {
    "campaign-events": (
        ["campaign", "submit"],
        CAMPAIGN + "events: 1000000000000000000000000000000\n" + UNIFORM,
        "events: must be at most 1,000,000,000,000",
    ),
    "campaign-shards": (
        ["campaign", "submit"],
        CAMPAIGN + "events: 1000000000000\nshard_size: 1\n" + UNIFORM,
        "more than the 1,000,000 a campaign may have",
    ),
    "train-events": (
        ["train"],
        "kind: train\nname: t\ndata: {source: simulated_showers, events: 1000000000000000000000000000000}\n",
        "data.events: must be at most 100,000,000",
    ),
    "train-sampler-options-bomb": (
        ["train"],
        "kind: train\nname: t\nmodel:\n  sampler:\n    name: euler\n    options:\n"
        + _alias_bomb("      "),
        "more than 100,000 YAML nodes once aliases are expanded",
    ),
    "campaign-sampler-options-bomb": (
        ["campaign", "submit"],
        CAMPAIGN + "events: 10\n" + UNIFORM + "sampler_options:\n" + _alias_bomb("  "),
        "more than 100,000 YAML nodes once aliases are expanded",
    ),
    "recursive-alias": (
        ["campaign", "submit"],
        CAMPAIGN + "events: 10\nconditions: &c {distribution: discrete, values: [1], x: *c}\n",
        "recursive YAML alias at line 5",
    ),
    "deep-nesting": (
        ["train"],
        "kind: train\nname: t\ntags: " + "[" * 20_000 + "]" * 20_000 + "\n",
        "YAML nested deeper than 64 levels",
    ),
    "long-list": (
        ["campaign", "submit"],
        CAMPAIGN
        + "events: 10\nconditions: {distribution: discrete, values: ["
        + ", ".join(["1024"] * 50_000)
        + "]}\n",
        "a list or mapping of more than 10,000 items",
    ),
    "big-file": (
        ["campaign", "submit"],
        CAMPAIGN
        + "events: 10\nconditions: {distribution: discrete, values: ["
        + ", ".join(["1024.00000000"] * 400_000)
        + "]}\n",
        "job file is larger than 1,000,000 bytes",
    ),
}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _run_limited(argv: list[str], home, tmp_path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`farm ARGV` in a subprocess under the memory limit; (result, non-empty stderr lines)."""
    result = subprocess.run(
        [sys.executable, "-m", "farm.cli", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=_limit_memory,
        env={"FARM_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    return result, [ln for ln in result.stderr.splitlines() if ln.strip()]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_job_file_gets_one_line_within_bounded_memory(name, tmp_path):
    command, text, message = HOSTILE[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    home = tmp_path / "home"
    result, lines = _run_limited([*command, str(path)], home, tmp_path)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"farm: error: {path}: ") and message in lines[0], lines[0]
    assert len(lines[0]) < 400  # the error names the bound; it does not echo the file
    # nothing was built from the file: no campaign recorded, no MLflow run, no resume index
    assert not (home / "campaigns").exists() and not (home / "train").exists()
    assert not (home / "mlflow.db").exists()


def test_simulated_training_data_beyond_memory_is_refused_before_simulating(tmp_path):
    path = tmp_path / "ds3.yaml"
    path.write_text(
        "kind: train\nname: t\ndata: {source: simulated_showers, geometry: ds3, events: 90000000}\n"
    )
    home = tmp_path / "home"
    result, lines = _run_limited(["train", str(path)], home, tmp_path)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "90,000,000 showers of 40,500 voxels need about" in lines[0]
    assert not (home / "train").exists() and not (home / "mlflow.db").exists()
