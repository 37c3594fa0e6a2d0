"""farm train on streamed showers: Ray Data blocks, one shard per Ray Train worker, same results."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_kinds import tiny_distill_job

from farm import registry
from farm.data.showers import simulate_in_memory
from farm.data.splits import split_indices
from farm.errors import FarmError
from farm.formats.calochallenge import write_calochallenge
from farm.formats.shower_rows import ShowerSource
from farm.formats.showers_parquet import write_showers_parquet
from farm.geometry import load_geometry
from farm.specs import parse_job, resolved
from farm.train import FAULT_ENV, run_training
from farm.train.data import prepare_data
from farm.train.streaming import (
    ShardStream,
    StreamPlan,
    loading_choice,
    plan_blocks,
    training_dataset,
)

GEOMETRY = load_geometry("ds1-photons")


@pytest.fixture(scope="module")
def showers_h5(tmp_path_factory) -> str:
    """1,200 simulated DS1-photon showers in one CaloChallenge file."""
    url = str(tmp_path_factory.mktemp("streaming") / "ds1.h5")
    showers, e_inc = simulate_in_memory(GEOMETRY, 1200, 5, [1024.0, 65536.0])
    write_calochallenge(url, showers, e_inc, geometry=GEOMETRY)
    return url


def distill_job(teacher: str):
    """A 1-epoch consistency distillation of a tiny teacher."""
    return tiny_distill_job(teacher, "tiny-stream-cd", epochs=1, validation_events=0)


def numbered_shards(folder: Path) -> str:
    """A folder of 3 shards (2 HDF5, 1 Parquet of 4 row groups); voxel 0 holds the global row."""
    rows = np.arange(500)
    showers = np.zeros((500, GEOMETRY.n_voxels), np.float32)
    showers[:, 0] = rows + 1
    e_inc = 1000.0 + rows
    folder.mkdir()
    write_calochallenge(str(folder / "a.h5"), showers[:150], e_inc[:150], geometry=GEOMETRY)
    write_calochallenge(str(folder / "b.h5"), showers[150:300], e_inc[150:300], geometry=GEOMETRY)
    write_showers_parquet(
        str(folder / "c.parquet"), showers[300:], e_inc[300:], rows[300:], GEOMETRY.name,
        row_group_size=50,
    )  # fmt: skip
    return str(folder)


def job(
    url: str,
    loading: str,
    epochs: int = 2,
    workers: int = 1,
    name: str = "tiny-stream",
    model: dict | None = None,
):
    return parse_job(
        {
            "kind": "train",
            "name": name,
            "data": {
                "source": "calochallenge",
                "url": url,
                "geometry": "ds1-photons",
                "loading": loading,
                "stream": {"block_events": 100, "shuffle_buffer": 300},
            },
            "model": model
            or {
                "network": {"kind": "mlp", "width": 32, "depth": 1, "embed_dim": 16},
                "sampler": {"name": "euler", "nfe": 2},
            },
            "optim": {"epochs": epochs, "batch_size": 128, "lr": 1e-3, "warmup_steps": 2},
            "resources": {"workers": workers, "use_gpu": False},
            "validation_events": 50,
        },
        "test",
        kind="train",
    )


TINY_MLP = {"kind": "mlp", "width": 32, "depth": 1, "embed_dim": 16}
TWO_STAGE = {
    "kind": "two_stage",
    "energy": {"network": TINY_MLP, "sampler": {"name": "euler", "nfe": 2}},
    "shape": {"network": TINY_MLP, "sampler": {"name": "euler", "nfe": 2}},
}


def test_blocks_hold_every_training_row_once_across_hdf5_and_parquet(tmp_path):
    source = ShowerSource(numbered_shards(tmp_path / "shards"), GEOMETRY)
    train = split_indices(source.n, 0.7, 0.1, 0)["train"]
    blocks = plan_blocks(source, train, None, seed=0)
    rows = np.concatenate([b["rows"] for b in blocks])
    assert np.array_equal(np.sort(rows), train)  # each training row in exactly one block
    files = {b["file"] for b in blocks}
    assert files == {0, 1, 2}
    for b in blocks:  # a block lies inside one file
        lo, hi = source.offsets[b["file"]], source.offsets[b["file"] + 1]
        assert lo <= b["rows"].min() and b["rows"].max() < hi
    # Parquet: one block per row group (4 groups of 50), HDF5: 16 MiB slices (whole small files)
    assert sum(b["file"] == 2 for b in blocks) == 4 and sum(b["file"] < 2 for b in blocks) == 2
    again = plan_blocks(source, train, None, seed=0)
    other = plan_blocks(source, train, None, seed=1)
    assert [b["rows"][0] for b in again] == [b["rows"][0] for b in blocks]
    assert [b["rows"][0] for b in other] != [b["rows"][0] for b in blocks]


def test_auto_loading_streams_what_would_not_fit_in_half_the_memory(showers_h5):
    import psutil

    spec = job(showers_h5, "auto").data
    assert loading_choice(spec, 1200, GEOMETRY.n_voxels)["mode"] == "memory"
    huge = int(psutil.virtual_memory().total // (GEOMETRY.n_voxels * 4 * 3)) + 1
    choice = loading_choice(spec, huge, GEOMETRY.n_voxels)
    assert choice["mode"] == "stream" and choice["chosen_by"] == "auto"
    assert choice["memory_path_gib"] > choice["machine_gib"] / 2
    assert loading_choice(job(showers_h5, "memory").data, huge, 368)["mode"] == "memory"


def test_a_worker_shard_repeats_an_epoch_and_reshuffles_the_next(ray_session, tmp_path):
    import ray.data

    spec = job(numbered_shards(tmp_path / "shards"), "stream").data
    data = prepare_data(spec, job(spec.url, "stream").model)
    plan: StreamPlan = data.stream
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    stream = ShardStream(training_dataset(plan).iterator(), plan.n_train, 120, seed=7)

    def epoch_rows(epoch: int) -> np.ndarray:
        return np.concatenate(
            [x[:, 0].numpy().astype(int) - 1 for x, _ in stream.batches(epoch, 0, 50)]
        )

    first, again, second = epoch_rows(0), epoch_rows(0), epoch_rows(1)
    train = split_indices(500, 0.7, 0.1, 0)["train"]
    assert len(first) == 350 and set(first) <= set(train)  # 7 full batches of training rows
    assert np.array_equal(first, again)
    assert not np.array_equal(first, second)
    _, cond = next(iter(stream.batches(0, 0, 50)))
    x0 = next(iter(stream.batches(0, 0, 50)))[0][:, 0].numpy().astype(int) - 1
    assert np.allclose(cond[:, 0].numpy(), 1000.0 + x0)  # E_inc travels with its shower


def test_streamed_training_matches_the_in_memory_run(
    ray_session, farm_home, showers_h5, monkeypatch
):
    memory = run_training(job(showers_h5, "memory", name="tiny-memory"))
    streamed = run_training(job(showers_h5, "stream", name="tiny-stream"))
    # same split, same preprocessing fit (fit_events >= n_train), same validation events
    a = registry.load("tiny-memory@candidate").model.preprocessing.state_dict()
    b = registry.load("tiny-stream@candidate").model.preprocessing.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # different batches (shuffle buffer vs permutation) and noise: equal within 1 %
    assert streamed.metrics["val_loss"] == pytest.approx(memory.metrics["val_loss"], rel=0.01)
    assert streamed.metrics["peak_rss_mib"] > 0
    card = registry.show("tiny-stream@candidate")["card"]
    assert card["data"]["loading"]["mode"] == "stream"
    assert card["data"]["loading"]["chosen_by"] == "spec"
    assert card["data"]["split"]["n_train"] == 840 and card["data"]["loading"]["fit_events"] == 840
    assert card["data"]["e_inc_range"] == [1024.0, 65536.0]
    assert registry.show("tiny-memory@candidate")["card"]["data"]["loading"]["mode"] == "memory"
    # its 1-step student distils from the teacher's stream (the teacher's data, streamed again;
    # the card may name the file once its folder is an allowed location)
    monkeypatch.setenv("FARM_ALLOWED_LOCATIONS", os.path.dirname(showers_h5))
    student = run_training(distill_job("tiny-stream@candidate"))
    card = registry.show(f"tiny-stream-cd/{student.version}")["card"]
    assert card["data"]["loading"]["mode"] == "stream" and card["teacher"] == "tiny-stream/1"
    assert card["config"]["process"]["kind"] == "consistency"
    assert np.isfinite(student.metrics["val_loss"]) and student.metrics["epoch"] == 1


@pytest.mark.slow  # about 55 s; tests/models/two_stage/test_two_stage_stream.py checks the stream in seconds
def test_a_two_stage_model_trains_from_the_stream_like_from_memory(
    ray_session, farm_home, showers_h5
):
    memory = run_training(job(showers_h5, "memory", name="tiny-2s-memory", model=TWO_STAGE))
    streamed = run_training(job(showers_h5, "stream", name="tiny-2s-stream", model=TWO_STAGE))
    a = registry.load("tiny-2s-memory@candidate").model
    b = registry.load("tiny-2s-stream@candidate").model
    for stage in ("energy", "shape"):  # both stages' preprocessing fitted on the same events
        pa = getattr(a, stage).preprocessing.state_dict()
        pb = getattr(b, stage).preprocessing.state_dict()
        assert all(torch.equal(pa[k], pb[k]) for k in pa), stage
    for key in ("val_loss_energy", "val_loss_shape"):  # other batches and noise: within 2 %
        assert streamed.metrics[key] == pytest.approx(memory.metrics[key], rel=0.02), key
    card = registry.show("tiny-2s-stream@candidate")["card"]
    assert card["data"]["loading"]["mode"] == "stream"
    assert card["config"]["kind"] == "two_stage"


@pytest.mark.slow
def test_a_missing_file_fails_clearly_and_the_run_resumes_when_it_is_back(
    ray_session, farm_home, showers_h5, monkeypatch
):
    tiny = job(showers_h5, "stream", epochs=3, name="tiny-resume")
    monkeypatch.setenv(FAULT_ENV, "1")
    with pytest.raises(FarmError, match=r"simulated crash after epoch 1"):
        run_training(tiny)
    monkeypatch.delenv(FAULT_ENV)
    moved = showers_h5 + ".away"
    os.rename(showers_h5, moved)
    try:
        with pytest.raises(FarmError, match=r"ds1.h5: file not found"):
            run_training(tiny)
    finally:
        os.rename(moved, showers_h5)
    result = run_training(tiny)
    assert result.resumed_from_epoch == 1 and result.metrics["epoch"] == 3
    index = json.loads(Path(glob.glob(f"{farm_home}/train/tiny-resume/*.json")[0]).read_text())
    assert index["status"] == "finished"


@pytest.mark.slow  # two Tune trials, each a streamed TorchTrainer
def test_a_search_streams_its_trials_and_the_diverging_one_loses(
    ray_session, farm_home, showers_h5
):
    from farm.tune import run_search

    base = resolved(job(showers_h5, "stream", epochs=2, name="tiny-stream-tune"))
    search = parse_job(
        {
            "kind": "tune",
            "name": "tiny-stream-tune",
            "base": base,
            "space": {"optim.lr": {"type": "choice", "values": [1.0e-3, 10.0]}},
            "points_to_evaluate": [{"optim.lr": 1.0e-3}, {"optim.lr": 10.0}],
            "trials": 2,
            "concurrency": 1,
            "resources_per_trial": {"workers": 1, "cpus": 1, "use_gpu": False},
            "seed": 0,
        },
        "test",
        kind="tune",
    )
    result = run_search(search)
    assert result.status == "finished" and len(result.trials) == 2
    assert result.best.params == {"optim.lr": 1.0e-3}  # a learning rate of 10 must lose
    card = registry.show("tiny-stream-tune@candidate")["card"]
    assert card["data"]["loading"]["mode"] == "stream"
    assert card["data"]["split"]["n_train"] == 840
    streamed = run_training(job(showers_h5, "stream", epochs=2, name="tiny-stream-alone"))
    # the good trial is the same streamed job as `farm train` runs: equal within 1 %
    assert result.best.metrics["val_loss"] == pytest.approx(streamed.metrics["val_loss"], rel=0.01)
