"""Registry round trip on a real MLflow SQLite backend: register, alias, load, promote with gates."""

import json

import pytest
import torch

from farm import registry
from farm.errors import FarmError
from models.checkpoint import save_model
from models.config import ModelConfig
from models.generative import GenerativeModel


@pytest.fixture
def registered(farm_home, tmp_path):
    torch.manual_seed(3)
    model = GenerativeModel(ModelConfig(), 12, 1)
    ckpt = tmp_path / "ckpt"
    save_model(model, ckpt, card={"data": {"geometry": "ds1-photons"}})
    client = registry.client()
    run = client.create_run(registry.experiment_id("reg-test"))
    gates = json.dumps({"sep/e_ratio": {"max": 0.05}})
    mv = registry.register(
        "reg-test", run.info.run_id, str(ckpt), aliases=["candidate"], tags={"farm.gates": gates}
    )
    return model, mv


def test_default_backend_is_sqlite_in_farm_home(farm_home):
    assert registry.tracking_uri() == f"sqlite:///{farm_home}/mlflow.db"


def test_load_by_alias_and_version_is_bit_identical(registered):
    model, mv = registered
    for ref in ("reg-test@candidate", f"reg-test/{mv.version}", "reg-test"):
        result = registry.load(ref)
        loaded, card, version = result.model, result.card, result.version
        assert version.version == mv.version and result.key == f"reg-test/{mv.version}"
        assert card.data.geometry == "ds1-photons"
        original, again = model.state_dict(), loaded.state_dict()
        assert original.keys() == again.keys()
        assert all(torch.equal(original[k], again[k]) for k in original)


def test_artifacts_are_safetensors_and_json_only(registered):
    path, _ = registry.download("reg-test@candidate")
    import os

    assert sorted(os.listdir(path)) == ["model.json", "weights.safetensors"]


def test_list_and_show(registered):
    rows = registry.list_models()
    assert [r["name"] for r in rows] == ["reg-test"]
    assert rows[0]["aliases"] == "candidate->v1"
    info = registry.show("reg-test@candidate")
    assert info["aliases"] == ["candidate"] and info["card"]["dim"] == 12


def test_promotion_gates(registered):
    with pytest.raises(FarmError, match="fails its promotion gates: sep/e_ratio: not evaluated"):
        registry.promote("reg-test", "1", "production")
    registry.log_evaluation("reg-test/1", {"sep/e_ratio": {"value": 0.2, "floor": 0.01}})
    with pytest.raises(FarmError, match=r"sep/e_ratio = 0.2 > max 0.05"):
        registry.promote("reg-test", "1", "production")
    mv = registry.promote("reg-test", "1", "production", force_reason="accepted for a test")
    assert "production" in mv.aliases
    assert mv.tags["farm.forced.production"] == "accepted for a test"
    registry.log_evaluation("reg-test/1", {"sep/e_ratio": {"value": 0.01}})
    assert registry.evaluation(registry.resolve("reg-test/1")) == {"sep/e_ratio": 0.01}
    assert not any(k.startswith("eval.") for k in registry.resolve("reg-test/1").tags)
    assert "staging" in registry.promote("reg-test", "1", "staging").aliases


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope@candidate", "model 'nope' not found in the registry (known: reg-test)"),
        ("reg-test@nope", "model 'reg-test' has no alias 'nope' (aliases: candidate)"),
        ("reg-test/9", "model 'reg-test' has no version 9 (versions: 1)"),
        ("bad ref!", "invalid model reference"),
    ],
)
def test_unknown_references(registered, ref, message):
    with pytest.raises(FarmError) as err:
        registry.resolve(ref)
    assert message in str(err.value)
