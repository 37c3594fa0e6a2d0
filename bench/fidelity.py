"""Fidelity ladder: train each shipped recipe, generate, evaluate beside the reference floor.

For one dataset (ds1-photons, ds2, jets-top) and one budget (small: 2 CPU cores; full: a GPU),
every recipe (a job file `jobs/train-<dataset>-<recipe>.yaml` plus the budget's overrides of data
size and epochs, both recorded in results.json) is trained with plain `models` code
(`models.training.fit`; no Ray, no MLflow), asked for --n-generate events at held-out truth
conditions (incident energies, or jet pT, eta and constituent count, from an independent
sample), and compared with a held-out reference of 2 x --n-generate events by farm's evaluation
(`evaluate_showers` / `evaluate_jets`, classifiers on): the generated events against reference
half A, and half B against half A (the floor: the best any model can score on this evaluation).
It prints, and writes to --out as results.json and results.md, one row per recipe and the floor
row: auc_low, auc_high, sep_mean, sep_max (with its feature), FPD, KPD (jets: w1m, w1p and the
tau21 / tau32 separations), training seconds and generation events/s. Never asserts anything.

    python bench/fidelity.py --dataset ds1-photons --budget small --out /tmp/fid
    python bench/fidelity.py --dataset ds2 --budget small --recipes electrons-two-stage --out /tmp/fid
    python bench/fidelity.py --dataset jets-top --budget small --out /tmp/fid
    python bench/fidelity.py --dataset ds1-photons --recipes flow --set optim.epochs=5 --out /tmp/x

Reference data: showers from `farm.data.showers.simulate_in_memory` (seeds 1001 for the
reference, 1002 for the generation conditions; training data use the job's seed); jets from
Pythia 8 + FastJet (`farm.data.jets.generate_jets_sharded`, which starts a local Ray instance
for its shards), cached under --out/cache so reruns reuse them.

`full` on a GPU machine whose Python has only torch, numpy, pyarrow and h5py: nothing here
imports Ray or MLflow, but farm.data, farm.evaluation and models need pydantic (with
pydantic_core, annotated_types, typing_extensions, typing_inspection), pyyaml, safetensors,
fsspec, scipy and tqdm; matplotlib for the evaluation plots (or pass --no-plots). Jets need the
cached Pythia samples (copy --out/cache from a machine with pythia8, fastjet and ray).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT / "jobs"

REFERENCE_SEED = 1001
"""Seed of the held-out reference sample (training data use the job's own seed)."""

CONDITION_SEED = 1002
"""Seed of the independent sample whose truth conditions the models generate for."""

JET_SHARD = 1000
"""Jets per cached Pythia shard."""

DATASET_JOB_PREFIX = {
    "ds1-photons": "train-ds1-photons-",
    "ds2": "train-ds2-",
    "jets-top": "train-jets-top-",
}
"""Job files of a dataset: jobs/<prefix><recipe>.yaml."""

LADDER: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "ds1-photons": {
        "flow": {
            "small": {"data.events": 24_000, "optim.epochs": 12},
            "full": {"data.events": 100_000, "optim.epochs": 100},
        },
        "flow-quantile": {
            "small": {"data.events": 24_000, "optim.epochs": 60},
            "full": {"data.events": 100_000, "optim.epochs": 200},
        },
        "two-stage": {
            "small": {"data.events": 24_000, "optim.epochs": 60},
            "full": {"data.events": 100_000, "optim.epochs": 200},
        },
        "transformer-quantile": {
            "small": {"data.events": 24_000, "optim.epochs": 10},
            "full": {"data.events": 100_000, "optim.epochs": 100},
        },
    },
    "ds2": {
        "electrons-flow": {
            "small": {"optim.epochs": 30},
            "full": {},
        },
        "electrons-flow-quantile": {
            "small": {"optim.epochs": 30},
            "full": {"data.events": 100_000, "optim.epochs": 200},
        },
        "electrons-two-stage": {
            "small": {"data.events": 30_000, "optim.epochs": 20},
            "full": {"data.events": 100_000, "optim.epochs": 200},
        },
        "electrons-two-stage-mlp": {
            "small": {"optim.epochs": 30},
            "full": {"data.events": 100_000, "optim.epochs": 200},
        },
    },
    "jets-top": {
        "flow": {
            "small": {"optim.epochs": 80},
            "full": {},
        },
        "transformer": {
            "small": {"optim.epochs": 40},
            "full": {"data.events": 100_000, "optim.epochs": 200},
        },
    },
}
"""Recipes of the ladder per dataset, with each budget's overrides (dotted keys of the job)."""

ROW_METRICS = ("auc_low", "auc_high", "sep_mean", "sep_max", "fpd", "kpd")
SHOWER_EXTRA = ("sep_voxel_spectrum", "sep_width_max")
JET_EXTRA = ("w1m", "w1p", "sep/tau21", "sep/tau32", "sep/mass")


@dataclass
class RecipeResult:
    """One row of the ladder: what was trained, how long it took, what the evaluation says."""

    recipe: str
    job: str
    overrides: dict[str, Any]
    train_events: int
    epochs: int
    train_seconds: float
    generate_events_per_s: float
    metrics: dict[str, float]
    sep_max_feature: str
    learning_curve: list[dict[str, float]] = field(default_factory=list)
    worst_features: list[tuple[str, float, float]] = field(default_factory=list)


# --------------------------------------------------------------------------- recipes


def set_dotted(doc: dict[str, Any], key: str, value: Any) -> None:
    """doc['a']['b'] = value for key 'a.b' (intermediate dicts are created)."""
    *parents, last = key.split(".")
    node = doc
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value


def recipe_job(dataset: str, recipe: str, overrides: dict[str, Any]):
    """The validated train job of a recipe: jobs/<prefix><recipe>.yaml with `overrides` applied."""
    from farm.specs import parse_job

    path = JOBS / f"{DATASET_JOB_PREFIX[dataset]}{recipe}.yaml"
    doc = yaml.safe_load(path.read_text())
    for key, value in overrides.items():
        set_dotted(doc, key, copy.deepcopy(value))
    return parse_job(doc, str(path), kind="train"), path


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """--set key=value pairs, values parsed as YAML (numbers, lists, dicts)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = yaml.safe_load(value)
    return out


# --------------------------------------------------------------------------- data


def jets_cached(out: Path, process: str, n: int, seed: int, data_spec: Any = None):
    """Pythia jets (farm JetSample), generated once under out/cache and reused."""
    from farm.data.jets import JetGenConfig, generate_jets_sharded
    from farm.formats.reader import read_jets

    spec = {} if data_spec is None else data_spec
    kwargs = {k: getattr(spec, k) for k in ("pt_hat_min", "pt_hat_max", "n_constituents") if spec}
    url = out / "cache" / f"jets-{process}-seed{seed}-n{n}"
    generate_jets_sharded(
        JetGenConfig(process=process, n_jets=n, **kwargs), seed, str(url), JET_SHARD, progress=False
    )
    return read_jets(str(url))


def training_data(job: Any, out: Path):
    """(train, val) TrainData and the completed model config of a train job, as farm train does."""
    from farm.data.sources import load_showers, split
    from farm.samples import JetSample
    from farm.train.data import complete_model_config, layer_shapes
    from models.training import TrainData

    spec = job.data
    if spec.source == "simulated_jets":
        jets = jets_cached(out, spec.process, spec.events, spec.seed, spec)
        dataset = JetSample(jets.constituents, jets.jet_features, {"source": "simulated_jets"})
    else:
        dataset = load_showers(spec)
    parts = split(dataset, spec)
    tensors = []
    for name in ("train", "val"):
        x, c = parts[name].model_inputs()
        tensors.append(TrainData(torch.from_numpy(np.asarray(x)), torch.from_numpy(c).float()))
    return tensors[0], tensors[1], complete_model_config(job.model, layer_shapes(dataset))


def shower_reference(geometry: str, n_reference: int, n_generate: int):
    """(reference (showers, e_inc), generation e_inc): held-out, independent samples."""
    from farm.data.shower_sim import incident_energies
    from farm.data.showers import simulate_in_memory
    from farm.geometry import load_geometry

    reference = simulate_in_memory(geometry, n_reference, REFERENCE_SEED)
    rng = np.random.default_rng(CONDITION_SEED)
    return reference, incident_energies(load_geometry(geometry), n_generate, rng)


# --------------------------------------------------------------------------- train, generate


def train(job: Any, config: Any, train_data, val_data, log) -> tuple[Any, float, list[dict]]:
    """models.training.fit on plain tensors; (model, seconds, per-epoch metrics)."""
    from models.training import fit

    curve: list[dict[str, float]] = []

    def report(metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        curve.append(dict(metrics))
        keys = ("epoch", "train_loss", "val_loss", "train_loss_energy", "train_loss_shape")
        log("  " + " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics))

    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    model = fit(config, job.optim, train_data, val_data, report, device=device)
    return model, time.perf_counter() - t0, curve


def generate_showers(model: Any, e_inc: np.ndarray, geometry: str, seed: int, batch: int):
    """(showers, events/s) for incident energies e_inc with the model's own sampler."""
    from farm.generation import SamplerSettings, shower_sample
    from farm.geometry import load_geometry

    settings = SamplerSettings(batch_size=batch)
    generator = torch.Generator(device=_device(model)).manual_seed(seed)
    t0 = time.perf_counter()
    sample = shower_sample(
        model, e_inc, load_geometry(geometry), generator=generator, settings=settings
    )
    return sample.showers, len(e_inc) / (time.perf_counter() - t0)


def generate_jets(model: Any, truth: Any, seed: int, batch: int):
    """(JetSample, events/s) for jet truth (pT, eta, count) with the model's own sampler."""
    from farm.generation import SamplerSettings
    from farm.generation.jets import jet_sample

    settings = SamplerSettings(batch_size=batch)
    generator = torch.Generator(device=_device(model)).manual_seed(seed)
    t0 = time.perf_counter()
    sample = jet_sample(model, truth, generator=generator, settings=settings)
    return sample, len(truth) / (time.perf_counter() - t0)


def _device(model: Any) -> str:
    return next(model.parameters()).device.type


# --------------------------------------------------------------------------- evaluate


def width_max(metrics: dict[str, dict]) -> tuple[float, float, str]:
    """Largest lateral-width separation (width_r/x/y of any layer): value, floor, feature."""
    widths = {k: m for k, m in metrics.items() if k.startswith("sep/width_")}
    if not widths:
        return math.nan, math.nan, ""
    name = max(widths, key=lambda k: widths[k]["value"])
    return widths[name]["value"], max(m["floor"] for m in widths.values()), name[4:]


def summarise(result: Any, kind: str) -> tuple[dict[str, float], dict[str, float], str]:
    """(values, floors, sep_max feature) of the row metrics from an EvaluationResult."""
    metrics = result.metrics
    names = ROW_METRICS + (JET_EXTRA if kind == "jets" else ("sep_voxel_spectrum",))
    values = {k: metrics[k]["value"] for k in names if k in metrics}
    floors = {k: metrics[k].get("floor", math.nan) for k in names if k in metrics}
    if kind == "showers":
        values["sep_width_max"], floors["sep_width_max"], values_feature = width_max(metrics)
        floors["sep_width_max_feature"] = values_feature
    return values, floors, metrics["sep_max"].get("feature", "")


def worst_features(result: Any, n: int = 8) -> list[tuple[str, float, float]]:
    """The n per-feature separations furthest above their floors: (feature, value, floor)."""
    seps = [
        (k[4:], m["value"], m["floor"]) for k, m in result.metrics.items() if k.startswith("sep/")
    ]
    seps.sort(key=lambda s: -(s[1] - s[2]))
    return seps[:n]


def evaluate(
    kind: str, reference: Any, generated: Any, geometry: str | None, out_url: str, plots: bool
):
    """farm's evaluation of generated against reference (classifiers on, seed 0)."""
    from farm.evaluation.evaluate import evaluate_jets, evaluate_showers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "jets":
            return evaluate_jets(
                reference, generated, out_url=out_url, seed=0, classifier=True, plots=plots
            )
        return evaluate_showers(
            reference, generated, geometry, out_url=out_url, seed=0, classifier=True, plots=plots
        )


# --------------------------------------------------------------------------- the ladder


def run_recipe(args: argparse.Namespace, recipe: str, overrides: dict[str, Any], refs: dict, log):
    """Train, generate and evaluate one recipe; its RecipeResult and the evaluation's floors."""
    job, path = recipe_job(args.dataset, recipe, overrides)
    train_data, val_data, config = training_data(job, args.out)
    log(f"{recipe}: {len(train_data.x)} training events, {job.optim.epochs} epochs ({path.name})")
    model, seconds, curve = train(job, config, train_data, val_data, log)
    model.eval()
    out_url = str(args.out / args.dataset / recipe)
    if args.keep:
        from models.checkpoint import save_model

        save_model(model, Path(out_url) / "model")
    if refs["kind"] == "jets":
        generated, rate = generate_jets(model, refs["truth"], args.seed, args.batch)
        result = evaluate(
            "jets", refs["reference"].as_dict(), generated.as_dict(), None, out_url, args.plots
        )
    else:
        showers, rate = generate_showers(model, refs["e_inc"], args.dataset, args.seed, args.batch)
        if args.keep:
            np.savez(Path(out_url) / "generated.npz", showers=showers, e_inc=refs["e_inc"])
        geometry = job.data.geometry
        result = evaluate(
            "showers", refs["reference"], (showers, refs["e_inc"]), geometry, out_url, args.plots
        )
    values, floors, feature = summarise(result, refs["kind"])
    row = RecipeResult(
        recipe=recipe,
        job=str(path.relative_to(ROOT)),
        overrides=overrides,
        train_events=len(train_data.x),
        epochs=job.optim.epochs,
        train_seconds=seconds,
        generate_events_per_s=rate,
        metrics=values,
        sep_max_feature=feature,
        learning_curve=curve,
        worst_features=worst_features(result),
    )
    return row, floors, result


def references(args: argparse.Namespace) -> dict[str, Any]:
    """The held-out reference and the generation conditions of the dataset."""
    n_ref, n_gen = 2 * args.n_generate, args.n_generate
    if args.dataset == "jets-top":
        reference = jets_cached(args.out, "top", n_ref, REFERENCE_SEED)
        truth = jets_cached(args.out, "top", n_gen, CONDITION_SEED).truth()
        return {"kind": "jets", "reference": reference, "truth": truth}
    reference, e_inc = shower_reference(args.dataset, n_ref, n_gen)
    return {"kind": "showers", "reference": reference, "e_inc": e_inc}


def fmt(value: Any) -> str:
    """A table cell: 3 significant digits, '-' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.3g}"


def markdown(dataset: str, budget: str, rows: list[RecipeResult], floors: dict[str, Any]) -> str:
    """The ladder as a Markdown table (one row per recipe, then the floor)."""
    jets = dataset == "jets-top"
    cols = ["auc_low", "auc_high", "sep_mean", "sep_max", "fpd", "kpd"]
    cols += (
        ["w1m", "w1p", "sep/tau21", "sep/tau32"]
        if jets
        else ["sep_width_max", "sep_voxel_spectrum"]
    )
    head = ["recipe", "events x epochs", *cols, "sep_max feature", "train s", "gen events/s"]
    lines = [
        f"## {dataset}, budget {budget}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
    ]
    for r in rows:
        cells = [r.recipe, f"{r.train_events} x {r.epochs}", *(fmt(r.metrics.get(c)) for c in cols)]
        cells += [r.sep_max_feature, f"{r.train_seconds:.0f}", f"{r.generate_events_per_s:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    floor_cells = ["floor (ref vs ref)", "-", *(fmt(floors.get(c)) for c in cols), "-", "-", "-"]
    lines.append("| " + " | ".join(floor_cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the ladder for one dataset and budget; print and write results.json / results.md."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", required=True, choices=sorted(LADDER))
    ap.add_argument("--budget", default="small", choices=("small", "full"))
    ap.add_argument("--out", type=Path, default=Path("fidelity-out"))
    ap.add_argument("--recipes", default=None, help="comma-separated recipe names (default: all)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra job override for every recipe, e.g. optim.epochs=5",
    )
    ap.add_argument(
        "--n-generate", type=int, default=10_000, help="generated events (reference: 2x)"
    )
    ap.add_argument("--batch", type=int, default=2000, help="generation batch size")
    ap.add_argument("--seed", type=int, default=7, help="generation seed")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="also write each recipe's model (DIR/<dataset>/<recipe>/model) and generated.npz",
    )
    ap.add_argument("--tag", default="", help="suffix of the results files (results<tag>.json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ladder = LADDER[args.dataset]
    recipes = args.recipes.split(",") if args.recipes else list(ladder)
    extra = parse_overrides(args.set)

    def log(text: str) -> None:
        print(text, flush=True)

    refs = references(args)
    rows, floors, all_floors = [], {}, None
    for recipe in recipes:
        overrides = {**ladder.get(recipe, {}).get(args.budget, {}), **extra}
        row, floors, _ = run_recipe(args, recipe, overrides, refs, log)
        all_floors = floors
        rows.append(row)
        log(markdown(args.dataset, args.budget, rows, all_floors))
        write_results(args, rows, all_floors)


def write_results(
    args: argparse.Namespace, rows: list[RecipeResult], floors: dict[str, Any]
) -> None:
    """results<tag>.json (every row, overrides, learning curves) and results<tag>.md."""
    base = args.out / args.dataset
    base.mkdir(parents=True, exist_ok=True)
    doc = {
        "dataset": args.dataset,
        "budget": args.budget,
        "n_generate": args.n_generate,
        "n_reference": 2 * args.n_generate,
        "threads": args.threads,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "rows": [asdict(r) for r in rows],
        "floor": floors,
    }
    (base / f"results{args.tag}.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    (base / f"results{args.tag}.md").write_text(markdown(args.dataset, args.budget, rows, floors))


if __name__ == "__main__":
    main()
