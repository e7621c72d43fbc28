"""Does a longer run help the capstone's latent model? Continue a trained `photo-latent` for a few
more epochs on the same cached latents (the four variants of the training photos), then measure it
with the capstone's protocol (256 held-out requests, DDIM 50, guidance 2) and on 256 training
requests, beside the numbers of the model it started from.

The recorded run continued the simple-loss model shipped before Min-SNR weighting (its weights:
`git show 8ec9ad3:data/checkpoints/photo-latent.safetensors`, and the same for its `.json`), on the
simple loss. Its weights are the EMA of an 8-epoch run whose learning rate decayed (cosine) to
3e-5; the continuation starts from them with a fresh AdamW at that final rate, constant, and EMA
0.998, on the model's own loss (Min-SNR weighted when its record names a gamma). Resumes its run
folder when killed; the weights are not shipped.

    python benchmarks/latent_longer_run.py --model old/photo-latent.safetensors [--epochs 2] \\
        [--run-dir runs/photo-latent-longer] [--out benchmarks/results/latent_longer_run.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the protocol's own drawing and sweep

from latent_photo_eval import held_out_requests, protocol_scores, training_sweep  # noqa: E402

from course_utils import checkpoints, config, latent, losses, photo_data, photos, training  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="photo-latent", help="the latent model to continue (default: the shipped one)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/latent_longer_run.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    shipped, record = latent.load_latent_model(args.model, device=torch.device("cpu"))
    recipe = record["recipe"]
    ps = photo_data.load_photos(size=256, progress=False)
    train_idx, held_idx = latent.split_indices(ps.paths, ps.folder)
    started = time.time()
    cache = latent.latent_cache(shipped.autoencoder, ps.images[train_idx], variants=recipe["extra"]["variants"])
    cache_seconds = time.time() - started

    unet = shipped.unet.float().train()
    final_lr = recipe["lr"] * recipe["lr_final_factor"]
    loss_fn = functools.partial(  # the model's own loss: Min-SNR weighted when its record says so
        losses.ddpm_loss,
        schedule=photos.schedule(),
        p_uncond=recipe["p_uncond"],
        snr_gamma=recipe["extra"].get("snr_gamma"),
    )
    result = training.train(
        unet,
        loss_fn,
        (cache.latents.float(), cache.features),
        epochs=args.epochs,
        batch_size=recipe["batch_size"],
        lr=final_lr,
        lr_schedule="constant",
        optimizer=recipe["optimizer"],
        ema_decay=recipe["ema_decay"],
        seed=1,
        run_dir=args.run_dir or config.runs_dir() / "photo-latent-longer",
        recipe=dict(recipe, epochs=args.epochs, lr=final_lr, lr_schedule="constant", seed=1),
    )
    longer = latent.LatentDiffusion(result.final_model.eval(), shipped.autoencoder, x0_clip=shipped.x0_clip)

    print("held-out requests, continued model:")
    requested, real_held = held_out_requests(ps, held_idx, args.n), ps.features[held_idx].numpy()
    held_out = protocol_scores(longer, requested, real_held, upsample_to=None, steps=50, w=2.0)
    out = dict(
        continued=dict(
            epochs=args.epochs,
            steps=result.step,
            lr=round(final_lr, 10),
            epoch_losses=[round(v, 4) for v in result.epoch_losses],
            epoch_seconds=[round(s, 1) for s in result.epoch_seconds],
            cache_seconds=round(cache_seconds, 1),
            machine=checkpoints.machine_description("cpu"),
        ),
        shipped=dict(steps=record["steps"], epoch_losses=[round(v, 4) for v in record["epoch_losses"]]),
        held_out=held_out,
        # the same 256 training requests as latent_photo_eval.py --guidance-sweep 2 --n 256
        training_requests=training_sweep(
            longer, ps, train_idx, {"2.0": (shipped.x0_clip, 2.0, 1.0)}, n=args.n, steps=50
        )["2.0"],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
