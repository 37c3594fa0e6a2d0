"""Sharded shower generation: (seed, shard) reproduces bit for bit, resume skips written shards."""

from __future__ import annotations

import os

import numpy as np
import pytest

from farm.cli.data_showers import register
from farm.data.showers import (
    generate_showers,
    shard_url,
    simulate_in_memory,
    simulate_shard,
)
from farm.errors import FarmError
from farm.formats.calochallenge import read_calochallenge
from farm.formats.showers_parquet import read_showers_parquet
from farm.geometry import load_geometry
from farm.sharding import Plan


def test_ray_shards_reproduce_and_resume(ray_session, tmp_path):
    out = str(tmp_path / "out")
    urls = generate_showers(
        "ds1-photons", 25, out, seed=5, shard_size=10, formats=("h5", "parquet")
    )
    assert len(urls) == 6 and all(os.path.exists(u) for u in urls)
    g = load_geometry("ds1-photons")
    # each shard equals a local, independent simulation of that (seed, shard)
    for k, n in enumerate((10, 10, 5)):
        s, e = read_calochallenge(shard_url(out, "ds1-photons", k, "h5"), g)
        s_ref, e_ref = simulate_shard(g, Plan(25, 10, 5).shard(k))
        assert len(e) == n
        assert s.tobytes() == s_ref.tobytes() and e.tobytes() == e_ref.tobytes()
    pq = read_showers_parquet(shard_url(out, "ds1-photons", 2, "parquet"))
    np.testing.assert_array_equal(pq["event_id"], np.arange(20, 25))
    assert pq["metadata"]["seed"] == 5 and pq["metadata"]["shard"] == 2
    # the in-memory path (Ray tasks, same shard seeds) gives the same events in order
    s_all, e_all = simulate_in_memory(g, 25, seed=5, shard_size=10)
    first, _ = read_calochallenge(shard_url(out, "ds1-photons", 0, "h5"))
    assert s_all.shape == (25, 368) and s_all[:10].tobytes() == first.tobytes()
    e_ref = np.concatenate([simulate_shard(g, s)[1] for s in Plan(25, 10, 5).shards()])
    assert e_all.tobytes() == e_ref.tobytes()

    # resume: delete one shard, note the others' mtimes; only the missing one is rewritten
    victim = shard_url(out, "ds1-photons", 1, "h5")
    os.remove(victim)
    keep = shard_url(out, "ds1-photons", 0, "h5")
    before = os.stat(keep).st_mtime_ns
    generate_showers("ds1-photons", 25, out, seed=5, shard_size=10, formats=("h5", "parquet"))
    assert os.stat(keep).st_mtime_ns == before
    s1, _ = read_calochallenge(victim)
    assert s1.tobytes() == simulate_shard(g, Plan(25, 10, 5).shard(1))[0].tobytes()
    with pytest.raises(FarmError, match=r"other settings.*seed"):
        generate_showers("ds1-photons", 25, out, seed=6, shard_size=10, formats=("h5",))


def test_user_energies_and_bad_input(tmp_path):
    out = str(tmp_path / "e")
    (url,) = generate_showers("ds2", 6, out, seed=1, shard_size=10, energies=[1e4, 5e4])
    _, e = read_calochallenge(url, "ds2")
    assert set(np.unique(e)) <= {1e4, 5e4}
    with pytest.raises(FarmError, match=r"5e\+07 MeV.*'ds2'"):
        generate_showers("ds2", 6, str(tmp_path / "f"), seed=1, energies=[5e7])
    with pytest.raises(FarmError, match="allowed parquet, h5"):
        generate_showers("ds2", 6, str(tmp_path / "g"), seed=1, formats=("root",))
    with pytest.raises(FarmError, match="unknown geometry"):
        generate_showers("ds9", 6, str(tmp_path / "h"), seed=1)


def test_cli_subcommand(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="farm data")
    register(parser.add_subparsers(dest="what"))
    out = str(tmp_path / "cli")
    args = parser.parse_args(
        [
            "showers",
            "--geometry",
            "ds1-photons",
            "--n",
            "12",
            "--out",
            out,
            "--seed",
            "3",
            "--format",
            "parquet",
            "--workers",
            "0",
        ]
    )
    assert args.handler(args) == 0
    got = read_showers_parquet(shard_url(out, "ds1-photons", 0, "parquet"))
    assert got["showers"].shape == (12, 368)
    assert "12 showers" in capsys.readouterr().out
