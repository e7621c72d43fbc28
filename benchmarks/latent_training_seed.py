"""The training run's own noise, measured: train the shipped `photo-latent` recipe again with another
training seed and nothing else changed (the same cached latents, steps, Min-SNR weighting and
settings; the seed sets the weights' start, the order of the data and the loss's times and noise),
then measure it with the capstone's protocol (256 held-out requests, DDIM 50, guidance 2), on the
same requests from other noise (seed 1000) and on the 256 training requests of
`latent_photo_eval.py --guidance-sweep 2 --n 256`.

Why: the goals met at the line (SHAPE and TOPOLOGY correlation, LIGHTING's error) and the one
missed by a little (COLOR's error) are read from one training run. Two runs of the same recipe show
how far a reading moves when only the run's seed changes, which is the margin a goal needs before a
single run can be said to meet it.

The shipped model (seed 0) is read from the files that hold its scores, so the comparison is paired
image by image. The shipped model stays the shipped model whatever this run scores: choosing
between runs by the held-out protocol would fit the held-out photos. The run resumes its folder
when killed; its weights stay there.

    python benchmarks/latent_training_seed.py [--seed 1] [--run-dir runs/photo-latent-seed1] \\
        [--out benchmarks/results/latent_training_seed.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the protocol's own drawing and sweep

from latent_photo_eval import RESULTS, shipped_scores, write_paired_run  # noqa: E402

from course_utils import config, latent  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=1, help="the training seed (the shipped model's is 0)")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "latent_training_seed.json")
    args = p.parse_args()
    if args.seed == latent.LATENT_DEFAULTS["seed"]:
        p.error(f"--seed {args.seed} is the shipped model's seed; pick another")
    torch.set_num_threads(2)
    shipped = shipped_scores()  # read first: a missing file stops the run before any training
    run_dir = args.run_dir or config.runs_dir() / f"photo-latent-seed{args.seed}"
    weights = run_dir / f"photo-latent-seed{args.seed}.safetensors"
    started = time.time()
    if not weights.is_file():  # a finished run is measured, not trained again
        latent.build_latent_model(out=weights, run_dir=run_dir, seed=args.seed)
    build_seconds = time.time() - started
    model, record = latent.load_latent_model(weights, device=torch.device("cpu"))
    if record["recipe"]["seed"] != args.seed:
        raise SystemExit(f"{weights} was trained with seed {record['recipe']['seed']}, not {args.seed}")

    write_paired_run(
        model,
        record,
        build_seconds,
        shipped=shipped,
        key="other_seed",
        label=f"training seed {args.seed}",
        n=args.n,
        out=args.out,
        seed=record["recipe"]["seed"],
        snr_gamma=record["recipe"]["extra"]["snr_gamma"],
    )


if __name__ == "__main__":
    main()
