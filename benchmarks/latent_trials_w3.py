"""The trials of the latent recipe, read again at guidance 3: every trained run that
`latent_training_seed.py`, `latent_scale_shift.py` (both seeds) and `latent_hue_angle.py` left in
`runs/`, drawn with the capstone's protocol at w = 3 (256 held-out requests, DDIM 50, image i from
seed i) and on the same requests from other noise (seed 1000).

Why: those trials were read at w = 2, the protocol's guidance before the sweep on training requests
chose 3. Read at w = 3 beside the shipped model at w = 3 (``latent_photo_eval.json`` and
``latent_photo_eval_redraw.json``, the same requests and seeds, so the pairing is image by image),
they show whether the goals the shipped model meets at w = 3 are the recipe's or its seed's.

Each run's weights are checked against the record its trial wrote (the training line), so a folder
that holds another run is refused. Results are written after every reading (atomically), and a
rerun skips the readings already in the file.

    python benchmarks/latent_trials_w3.py [--guidance 3] [--out benchmarks/results/latent_trials_w3.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the protocol's own drawing and scoring

import torch  # noqa: E402
from latent_photo_eval import _KEPT, REDRAW_SEED, RESULTS, held_out_requests, protocol_scores  # noqa: E402

from course_utils import config, files, latent, photo_data  # noqa: E402

# trial name -> (its run folder under runs/, the result file its trial wrote)
TRIALS = {
    "training seed 1": ("photo-latent-seed1", "latent_training_seed.json"),
    "adaptive GroupNorm, seed 0": ("photo-latent-scale-shift", "latent_scale_shift.json"),
    "adaptive GroupNorm, seed 1": ("photo-latent-scale-shift-seed1", "latent_scale_shift_seed1.json"),
    "the hue as an angle": ("photo-latent-hue-angle", "latent_hue_angle.json"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--guidance", type=float, default=latent.GUIDANCE)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--out", type=Path, default=RESULTS / "latent_trials_w3.json")
    args = p.parse_args()
    runs = config.runs_dir()
    missing = [
        f"runs/{folder}" for folder, _ in TRIALS.values() if not (runs / folder / f"{folder}.safetensors").is_file()
    ]
    if missing:  # before any compute
        raise SystemExit(f"no trained weights in {', '.join(missing)}: run the trial that trains them first")
    torch.set_num_threads(2)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if result and (result["protocol"]["guidance"], result["protocol"]["n"]) != (args.guidance, args.n):
        raise SystemExit(f"{args.out} holds readings at another guidance or size; pass another --out")
    result.setdefault("protocol", dict(n=args.n, steps=50, guidance=args.guidance, seeds=[0, REDRAW_SEED]))
    result.setdefault("runs", {})
    ps = photo_data.load_photos(size=256, progress=False)
    _, held_idx = latent.split_indices(ps.paths, ps.folder)
    requested, real_held = held_out_requests(ps, held_idx, args.n), ps.features[held_idx].numpy()
    for name, (folder, trial_file) in TRIALS.items():
        model, record = latent.load_latent_model(runs / folder / f"{folder}.safetensors", device=torch.device("cpu"))
        trained = json.loads((RESULTS / trial_file).read_text())["trained"]["record"]
        if record["recipe"]["trained"] != trained:
            raise SystemExit(f"runs/{folder} holds another run than the one {trial_file} measured")
        readings = result["runs"].setdefault(name, dict(run=folder, trial=trial_file))
        for key, seed in (("held_out", 0), ("held_out_redraw", REDRAW_SEED)):
            if key in readings:
                continue
            print(f"{name}, seed {seed}, guidance {args.guidance:g}:")
            scores = protocol_scores(
                model, requested, real_held, upsample_to=None, steps=50, w=args.guidance, seed=seed
            )
            readings[key] = {k: scores[k] for k in _KEPT}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            files.atomic_write(args.out, json.dumps(result, indent=1))
    print(f"{args.out}: {len(result['runs'])} runs, each read on both draws")


if __name__ == "__main__":
    main()
