"""Joining a Ray cluster through RAY_ADDRESS: an unreachable address is one line, exit 2."""

from __future__ import annotations

import os
import socket

import pytest

from farm.errors import FarmError
from farm.ray_utils import check_reachable


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_address_names_it(scheme, dead_port):
    address = f"{scheme}127.0.0.1:{dead_port}"
    with pytest.raises(FarmError, match=f"Ray cluster at RAY_ADDRESS={address} is unreachable"):
        check_reachable(address)


def test_listening_address_and_forms_without_a_port_pass():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_reachable(f"127.0.0.1:{s.getsockname()[1]}")
    for address in ("auto", "local"):
        check_reachable(address)  # Ray resolves these itself


def test_cli_exits_nonzero_with_one_line(tmp_path, dead_port, cli_error):
    address = f"127.0.0.1:{dead_port}"
    args = ["--geometry", "ds1-photons", "--n", "20", "--shard-size", "10"]
    out = tmp_path / "out"
    line = cli_error(["data", "showers", *args, "--out", str(out)], RAY_ADDRESS=address)
    assert f"Ray cluster at RAY_ADDRESS={address} is unreachable" in line
    assert not out.exists() or not os.listdir(out)
