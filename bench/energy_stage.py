"""The energy stage of a two-stage shower recipe alone: its layer energies against the reference.

Run: python bench/energy_stage.py [--dataset ds2] [--recipe electrons-two-stage-mlp]
[--set optim.epochs=100 --set model.preprocessing.energy_quantiles=null] [--threads 2]

Trains only `config.stage("energy")` of the recipe's job (bench/fidelity.py's data and seeds:
the job's data, reference seed 1001, conditions seed 1002), generates the layer energies of
--n-generate held-out incident energies and prints, beside the reference-vs-reference floor
(two independent reference halves of that size): the separation power of E_tot / E_inc, of
each layer energy (mean, worst layers) and a classifier AUC on (log(1 + E_layer), log E_inc,
E_tot / E_inc). It tells an energy-stage problem apart from a shape-stage one in minutes,
where the whole recipe takes half an hour. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/fidelity.py: recipes, seeds
import fidelity

from farm.evaluation.classifier import classifier_auc
from farm.evaluation.metrics import separation_power
from models.training import fit
from models.two_stage.model import TwoStageModel


def features(layer_e: np.ndarray, e_inc: np.ndarray) -> np.ndarray:
    """Classifier inputs: log(1 + E_layer / MeV), log E_inc, E_tot / E_inc."""
    return np.column_stack([np.log1p(layer_e), np.log(e_inc), layer_e.sum(1) / e_inc])


def compare(ref_a, e_a, ref_b, e_b, gen, e_gen) -> None:
    """Print each metric of generated vs reference half A beside half B vs half A."""

    def sep(x, y):
        return separation_power(x, y)[0]

    ratio_a = ref_a.sum(1) / e_a
    e_tot, e_tot_floor = sep(ratio_a, gen.sum(1) / e_gen), sep(ratio_a, ref_b.sum(1) / e_b)
    per = np.array([sep(ref_a[:, k], gen[:, k]) for k in range(ref_a.shape[1])])
    floor = np.array([sep(ref_a[:, k], ref_b[:, k]) for k in range(ref_a.shape[1])])
    print(f"sep E_tot/E_inc {e_tot:.4f} (floor {e_tot_floor:.4f})")
    print(f"sep layer energies: mean {per.mean():.4f} (floor {floor.mean():.4f})")
    worst = np.argsort(per)[::-1][:8]
    print("worst layers: " + ", ".join(f"{k}: {per[k]:.4f}" for k in worst))
    auc, err = classifier_auc(features(ref_a, e_a), features(gen, e_gen))
    auc0, err0 = classifier_auc(features(ref_a, e_a), features(ref_b, e_b))
    print(f"classifier AUC {auc:.3f} +- {err:.3f} (floor {auc0:.3f} +- {err0:.3f})")


def main() -> None:
    """Train the energy stage, generate, compare."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ds2", choices=("ds1-photons", "ds2"))
    ap.add_argument("--recipe", default="electrons-two-stage-mlp")
    ap.add_argument("--set", action="append", default=[], help="job override key=value")
    ap.add_argument("--n-generate", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("energy-stage-out"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    job, path = fidelity.recipe_job(args.dataset, args.recipe, fidelity.parse_overrides(args.set))
    train, val, config = fidelity.training_data(job, args.out)
    two = TwoStageModel(config, train.x.shape[1], 1)
    (e_train, _), (e_val, _) = two.stage_data(train), two.stage_data(val)
    stage = config.stage("energy")
    print(
        f"{path.name}: {len(e_train.x)} events x {job.optim.epochs} epochs; {stage.preprocessing}"
    )

    def report(metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        if metrics["epoch"] % 10 == 0:
            print(
                f"  epoch {metrics['epoch']} val_loss {metrics.get('val_loss', float('nan')):.4f}"
            )

    t0 = time.perf_counter()
    model = fit(stage, job.optim, e_train, e_val, report).eval()
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    n = args.n_generate
    (showers, e_ref), e_gen = fidelity.shower_reference(args.dataset, 2 * n, n)
    ref = two.layer_energies(torch.as_tensor(np.asarray(showers))).numpy()
    e_ref = np.asarray(e_ref, dtype=np.float64).ravel()
    e_gen = np.asarray(e_gen, dtype=np.float64).ravel()
    with torch.no_grad():
        cond = torch.from_numpy(e_gen).reshape(-1, 1)
        gen = model.generate(cond, generator=torch.Generator().manual_seed(0)).numpy()
    gen = np.where(gen < two.threshold_mev, 0.0, gen)
    compare(ref[:n], e_ref[:n], ref[n:], e_ref[n:], gen, e_gen)


if __name__ == "__main__":
    main()
