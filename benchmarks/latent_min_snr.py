"""Min-SNR weighting for the capstone's latent model, measured: train the `photo-latent` recipe with
the Min-SNR-gamma weighting of its loss (Hang et al. 2023; `losses.ddpm_loss(snr_gamma=...)`), then
measure it with the capstone's protocol (256 held-out requests, DDIM 50, guidance 2) and on the 256
training requests of `latent_photo_eval.py --guidance-sweep 2 --n 256`.

Why: the simple epsilon loss weighs the clean-image error at time t by SNR(t), so most of the
training signal goes to nearly clean steps, which polish texture; an image's outline and colours are
decided at the noisy steps. Capping that weight at gamma moves the signal toward them.

This run made the shipped `photo-latent` (gamma 5, `latent.LATENT_SNR_GAMMA`). The model it replaced,
trained on the simple loss, is `data/checkpoints/photo-latent.{safetensors,json}` at commit 8ec9ad3
(`git show 8ec9ad3:data/checkpoints/photo-latent.json > old/photo-latent.json`, the same for the
weights); `--redraw SEED --baseline old/photo-latent.safetensors` draws the held-out requests again from
other noise with both models, a paired second reading of the difference.

The run resumes its folder when killed; its weights stay there.

    python benchmarks/latent_min_snr.py --baseline old/photo-latent.safetensors [--gamma 5] \\
        [--run-dir runs/photo-latent-min-snr] [--out benchmarks/results/latent_min_snr.json]
    python benchmarks/latent_min_snr.py --redraw 1000 --baseline old/photo-latent.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the protocol's own drawing and sweep

from latent_photo_eval import held_out_requests, protocol_scores, trained_summary, training_sweep  # noqa: E402

from course_utils import config, latent, photo_data  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gamma", type=float, default=5.0)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/latent_min_snr.json"))
    p.add_argument("--baseline", type=Path, required=True, help="the simple-loss model to compare with (see above)")
    p.add_argument(
        "--redraw",
        type=int,
        default=None,
        metavar="SEED",
        help="after the run: draw the held-out requests again from other noise (this seed) with the trained "
        "model and --baseline, and add the paired scores to --out",
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    if args.redraw is not None:
        redraw(args)
        return
    run_dir = args.run_dir or config.runs_dir() / "photo-latent-min-snr"
    weights = run_dir / "photo-latent-min-snr.safetensors"
    started = time.time()
    if not weights.is_file():  # a finished run is measured, not trained again
        latent.build_latent_model(out=weights, run_dir=run_dir, snr_gamma=args.gamma)
    build_seconds = time.time() - started
    model, record = latent.load_latent_model(weights, device=torch.device("cpu"))
    _, simple = latent.load_latent_model(args.baseline, device=torch.device("cpu"))

    ps = photo_data.load_photos(size=256, progress=False)
    train_idx, held_idx = latent.split_indices(ps.paths, ps.folder)
    print("held-out requests, Min-SNR model:")
    requested, real_held = held_out_requests(ps, held_idx, args.n), ps.features[held_idx].numpy()
    held_out = protocol_scores(model, requested, real_held, upsample_to=None, steps=50, w=2.0)
    out = dict(
        trained=trained_summary(record, build_seconds, snr_gamma=record["recipe"]["extra"]["snr_gamma"]),
        simple_loss=dict(steps=simple["steps"], epoch_losses=[round(v, 4) for v in simple["epoch_losses"]]),
        held_out=held_out,
        training_requests=training_sweep(model, ps, train_idx, {"2.0": (model.x0_clip, 2.0, 1.0)}, n=args.n, steps=50)[
            "2.0"
        ],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


def redraw(args) -> None:
    """The protocol's held-out requests once more, every image from other noise, for the trained and
    the simple-loss model alike: a paired second reading of the difference between them."""
    out = json.loads(args.out.read_text())
    run_dir = args.run_dir or config.runs_dir() / "photo-latent-min-snr"
    ps = photo_data.load_photos(size=256, progress=False)
    _, held_idx = latent.split_indices(ps.paths, ps.folder)
    requested, real_held = held_out_requests(ps, held_idx, args.n), ps.features[held_idx].numpy()
    scores = {}
    for name, path in (("min_snr", run_dir / "photo-latent-min-snr.safetensors"), ("simple_loss", args.baseline)):
        model, _ = latent.load_latent_model(path, device=torch.device("cpu"))
        print(f"held-out requests, seed {args.redraw}, {name}:")
        got = protocol_scores(model, requested, real_held, upsample_to=None, steps=50, w=2.0, seed=args.redraw)
        scores[name] = {k: got[k] for k in ("fidelity", "fd_vs_held_out")}
    out["held_out_redraw"] = dict(seed=args.redraw, **scores)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
