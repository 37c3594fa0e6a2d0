"""farm tune: a small search (lr 10 must lose), ASHA, MLflow parent/child runs, resume, bad spaces."""

import json
from pathlib import Path

import pytest
import torch

from farm import registry
from farm.cli import main
from farm.errors import FarmError
from farm.specs import load_job, parse_job, resolved
from farm.tune import INTERRUPT_ENV, SEARCH_TAG, TRIAL_TAG, resume_search, run_search

TINY = Path(__file__).resolve().parents[2] / "jobs" / "tune-tiny.yaml"


def tiny_doc(**space) -> dict:
    doc = resolved(load_job(TINY, kind="tune"))
    doc["space"] = space
    return doc


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"optim.lr": {"type": "choice", "values": []}},
            "space.optim.lr: choice needs a non-empty",
        ),
        (
            {"optim.lr": {"type": "uniform", "low": 1.0, "high": 0.1}},
            "space.optim.lr: low (1) > high",
        ),
        (
            {"optim.lr": {"type": "loguniform", "low": 0, "high": 1}},
            "space.optim.lr: loguniform needs",
        ),
        (
            {"optim.lrr": {"type": "uniform", "low": 0.1, "high": 1}},
            "space.optim.lrr: unknown parameter",
        ),
        (
            {"model.network.widht": {"type": "randint", "low": 1, "high": 8}},
            "space.model.network.widht: unknown parameter path (model.network has: kind, width",
        ),
        (
            {"data.events": {"type": "randint", "low": 1, "high": 8}},
            "space.data.events: only model.",
        ),
        ({"optim.epochs": {"type": "uniform", "low": 1, "high": 3}}, "space.optim.epochs: "),
        (
            {"model.network.width": {"type": "choice", "values": [0, 8]}},
            "space.model.network.width: ",
        ),
        (
            {"optim.lr": {"type": "normal", "low": 0.1, "high": 1}},
            "space.optim.lr.type: Input should be",
        ),
        ({}, "space: must name at least one parameter"),
    ],
)
def test_bad_search_spaces_are_rejected_naming_the_key(space, message):
    with pytest.raises(FarmError) as err:
        parse_job(tiny_doc(**space), "t.yaml", kind="tune")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_rejects_a_bad_space_before_any_trial(farm_home, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    doc = tiny_doc(**{"optim.lr": {"type": "uniform", "low": 1.0, "high": 0.1}})
    path.write_text(json.dumps(doc))
    assert main(["tune", str(path)]) == 2
    assert "space.optim.lr: low (1) > high (0.1)" in capsys.readouterr().err
    assert not (farm_home / "tune").exists() and not (farm_home / "ray").exists()


def test_search_is_interrupted_resumed_and_registers_the_best(
    ray_session, farm_home, monkeypatch, capsys
):
    job = load_job(TINY, kind="tune")
    monkeypatch.setenv(INTERRUPT_ENV, "2")
    first = run_search(job)  # interrupted (as by Ctrl-C) after two trials finished
    assert first.status == "interrupted"
    assert 2 <= sum(r["status"] not in ("unfinished", "running") for r in first.trials) < 4
    monkeypatch.delenv(INTERRUPT_ENV)

    result = resume_search(first.search_id)
    assert result.status == "finished" and len(result.trials) == job.trials
    rows = {r["trial_id"]: r for r in result.trials}
    assert all(r["status"] in ("completed", "stopped early") for r in rows.values())
    assert result.best["params"] == {"optim.lr": 0.001}  # a learning rate of 10 must lose
    # ASHA stops a diverging trial only when a better one reached the rung first (a race with
    # 2 concurrent trials), so every stopped trial must have run fewer epochs; whether one is
    # stopped at all depends on timing (it was in 4 of 5 runs here)
    assert all(r["epochs"] < 4 for r in rows.values() if r["stopped_early"])
    assert {r["params"]["optim.lr"] for r in rows.values()} == {0.001, 10.0}

    c = registry.client()
    exp = c.get_experiment_by_name("tiny-tune").experiment_id
    parent = c.get_run(result.parent_run_id)
    assert parent.data.tags[SEARCH_TAG] == result.search_id
    assert parent.data.tags["farm.tune.best_trial"] == result.best["trial_id"]
    assert json.loads(parent.data.params["space.optim.lr"])["values"] == [0.001, 10.0]
    children = c.search_runs([exp], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    assert sorted(r.data.tags[TRIAL_TAG] for r in children) == sorted(rows)  # one run per trial
    for child in children:
        steps = [m.step for m in c.get_metric_history(child.info.run_id, "val_loss")]
        # no epoch logged twice (a resumed trial continues its run); a trial ASHA stopped may log
        # an epoch or two more before its workers are released
        assert (
            steps == sorted(set(steps)) and len(steps) >= rows[child.data.tags[TRIAL_TAG]]["epochs"]
        )
        assert child.data.params["optim.lr"] == str(
            rows[child.data.tags[TRIAL_TAG]]["params"]["optim.lr"]
        )

    mv = registry.resolve("tiny-tune@candidate")
    assert str(mv.version) == result.version and mv.tags[SEARCH_TAG] == result.search_id
    assert c.get_run(mv.run_id).data.tags[TRIAL_TAG] == result.best["trial_id"]
    model, card, _ = registry.load("tiny-tune@candidate")
    assert card["job"]["optim"]["lr"] == 0.001
    showers = model.generate(torch.full((4, 1), 1024.0), generator=torch.Generator().manual_seed(0))
    assert showers.shape == (4, 368) and torch.isfinite(showers).all()

    store = farm_home / "tune" / result.search_id
    assert json.loads((store / "search.json").read_text())["status"] == "finished"
    assert (
        (store / "trials.csv").read_text().splitlines()[0].startswith("trial_id,optim.lr,val_loss")
    )
    capsys.readouterr()
    assert main(["tune", "status", result.search_id]) == 0
    assert "finished" in capsys.readouterr().out
    with pytest.raises(FarmError, match="already finished"):
        resume_search(result.search_id)
