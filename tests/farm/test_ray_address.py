"""Joining a Ray cluster through RAY_ADDRESS: an unreachable address is one line, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from farm.errors import FarmError
from farm.ray_utils import check_reachable


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_address_names_it(scheme):
    address = scheme + _dead_address()
    with pytest.raises(FarmError, match=f"Ray cluster at RAY_ADDRESS={address} is unreachable"):
        check_reachable(address)


def test_listening_address_and_forms_without_a_port_pass():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_reachable(f"127.0.0.1:{s.getsockname()[1]}")
    for address in ("auto", "local"):
        check_reachable(address)  # Ray resolves these itself


def test_cli_exits_nonzero_with_one_line(tmp_path):
    address = _dead_address()
    env = {**os.environ, "RAY_ADDRESS": address, "FARM_HOME": str(tmp_path / "home")}
    args = ["--geometry", "ds1-photons", "--n", "20", "--shard-size", "10"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "farm.cli",
            "data",
            "showers",
            *args,
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"Ray cluster at RAY_ADDRESS={address} is unreachable" in lines[0]
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
