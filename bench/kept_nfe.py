"""A kept ladder model at other sampler NFEs: generation rate and the ladder's row metrics per NFE.

    python bench/kept_nfe.py --model-dir FID_OUT/ds2/electrons-two-stage-mlp/model \
        --dataset ds2 --nfe 2 4 8 20

Takes a model that `bench/fidelity.py --keep` wrote and generates for the ladder's held-out
conditions (the same reference and condition seeds, 10,000 events against 2 x 10,000 reference
showers) at each NFE of the (shape stage's) sampler, then evaluates as the ladder does (farm's
evaluation, classifiers on, no plots). Prints one markdown row per NFE; never asserts. Showers only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fidelity  # the ladder's references, evaluation and row summary


def main() -> None:
    """Generate and evaluate the kept model at each --nfe; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, type=Path)
    ap.add_argument("--dataset", default="ds2", choices=("ds1-photons", "ds2"))
    ap.add_argument("--nfe", type=int, nargs="+", required=True)
    ap.add_argument("--n-generate", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7, help="generation seed (the ladder's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("kept-nfe-out"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from farm.generation import SamplerSettings, shower_sample
    from farm.geometry import load_geometry
    from models.loading import load_model

    model = load_model(str(args.model_dir)).eval()
    reference, e_inc = fidelity.shower_reference(args.dataset, 2 * args.n_generate, args.n_generate)
    geometry = load_geometry(args.dataset)
    names = (*fidelity.ROW_METRICS, *fidelity.SHOWER_EXTRA)
    print(f"| nfe | events/s | {' | '.join(names)} | sep_max feature |")
    print("|" + " --- |" * (len(names) + 3))
    for nfe in args.nfe:
        t0 = time.perf_counter()
        settings = SamplerSettings(nfe=nfe, batch_size=2000)
        generator = torch.Generator().manual_seed(args.seed)
        sample = shower_sample(model, e_inc, geometry, generator=generator, settings=settings)
        rate = len(e_inc) / (time.perf_counter() - t0)
        out = str(args.out / f"nfe-{nfe}")
        result = fidelity.evaluate(
            "showers", reference, (sample.showers, e_inc), args.dataset, out, False
        )
        values, _, feature = fidelity.summarise(result, "showers")
        cells = " | ".join(fidelity.fmt(values.get(k)) for k in names)
        print(f"| {nfe} | {rate:,.0f} | {cells} | {feature} |", flush=True)


if __name__ == "__main__":
    main()
