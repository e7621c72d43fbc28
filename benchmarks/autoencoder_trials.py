"""Autoencoder trials for the 256 px latent model, measured on the held-out photos.

    python benchmarks/autoencoder_trials.py baseline            # bicubic-from-32 and the linear (PCA) floor per C
    python benchmarks/autoencoder_trials.py train NAME --channels 12 --grad-weight 1 --epochs 10
    python benchmarks/autoencoder_trials.py eval RUN_DIR        # PSNR / SSIM of the newest checkpoint
    python benchmarks/autoencoder_trials.py ceiling [--out benchmarks/results/feature_ceiling.json]

``ceiling`` measures the 32 features on the shipped autoencoder's reconstructions and on the 32 px
thumbnails enlarged (bicubic) and scores them against the photos' own as the capstone's protocol
scores a request (MAE and correlation per group, ``latent.autoencoder_scores``): what a latent model
could reach through this decoder, and what a 32 px image keeps of the features.

Every number is on the held-out split (latent.split_indices), at 256 px.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from course_utils import autoencoder, latent, metrics, photo_data, training


def held_out(n: int | None = None):
    ps = photo_data.load_photos(size=256, progress=False)
    train, held = latent.split_indices(ps.paths, ps.folder)
    return ps, train, held if n is None else held[:n]


def baseline() -> None:
    ps, train, held = held_out()
    x = ps.images[held].float() / 255.0
    up = (latent.bicubic_from(ps.images[held]) + 1) / 2
    print(f"held-out photos: {len(held)}, training photos: {len(train)}")
    print(f"bicubic from 32 px: PSNR {metrics.psnr(up, x):.2f} dB, SSIM {metrics.ssim(up, x):.3f}")
    f = 8
    patches = torch.nn.functional.pixel_unshuffle(ps.images[train[::4]].float() / 255.0, f)  # (n, 192, 32, 32)
    P = patches.transpose(0, 1).reshape(3 * f * f, -1)
    mean = P.mean(1, keepdim=True)
    cov = (P - mean) @ (P - mean).T / P.shape[1]
    _, vecs = torch.linalg.eigh(cov)
    test = torch.nn.functional.pixel_unshuffle(x, f)
    for C in (3, 4, 8, 12, 16):
        basis = vecs[:, -C:]  # (192, C)
        t = test.transpose(0, 1).reshape(3 * f * f, -1) - mean
        rec = basis @ (basis.T @ t) + mean
        rec = torch.nn.functional.pixel_shuffle(rec.reshape(3 * f * f, *test.shape[:1], 32, 32).transpose(0, 1), f)
        print(f"linear f=8 autoencoder (PCA of 8x8 patches), C={C:2d}: PSNR {metrics.psnr(rec.clamp(0, 1), x):.2f} dB")


def train_run(args) -> None:
    torch.set_num_threads(args.threads)
    ps, train, _ = held_out()
    cfg = autoencoder.AEConfig(latent_channels=args.channels, width=args.width, blocks=args.blocks)
    t0 = time.time()
    latent.train_autoencoder(
        ps.images[train],
        cfg=cfg,
        run_dir=args.run_dir,
        epochs=args.epochs,
        grad_weight=args.grad_weight,
        kl_weight=args.kl_weight,
        crop=args.crop,
        batch_size=args.batch_size,
    )
    print(f"trained in {time.time() - t0:.0f} s")


@torch.no_grad()
def evaluate(run_dir: str, n: int = 128) -> None:
    ps, _, held = held_out(n)
    last = training.last_checkpoint(run_dir)
    record = training.read_record(last)
    cfg = autoencoder.AEConfig.from_dict(record["recipe"]["extra"]["autoencoder"])
    model = autoencoder.Autoencoder(cfg)
    training.load_weights(model, last)
    model.eval()
    x = ps.signed(held)
    rec = torch.cat([model.decode_raw(model.moments(x[i : i + 16])[0]).clamp(-1, 1) for i in range(0, len(held), 16)])
    a, b = (rec + 1) / 2, (x + 1) / 2
    psnr, ssim = metrics.psnr(a, b), metrics.ssim(a, b)
    print(f"{run_dir} epoch {record['epoch']}: PSNR {psnr:.2f} dB, SSIM {ssim:.3f} on {len(held)} held-out photos")


@torch.no_grad()
def ceiling(out: Path) -> None:
    ps, _, held = held_out()
    ae, record = latent.load_autoencoder(device=torch.device("cpu"))
    scores = latent.autoencoder_scores(ae, ps.images[held], ps.features[held])
    print(f"{len(held)} held-out photos; the photo's features against those of:")
    print(f"{'group':10s} {'reconstruction: MAE':>20s} {'corr':>6s} {'bicubic from 32 px: MAE':>24s} {'corr':>6s}")
    for group in scores["feature_mae"]:
        print(
            f"{group:10s} {scores['feature_mae'][group]:20.4f} {scores['feature_corr'][group]:6.2f} "
            f"{scores['feature_mae_bicubic_from_32'][group]:24.4f} {scores['feature_corr_bicubic_from_32'][group]:6.2f}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(autoencoder_sha256=record["sha256"], **scores), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("baseline")
    t = sub.add_parser("train")
    t.add_argument("run_dir")
    t.add_argument("--channels", type=int, default=12)
    t.add_argument("--width", type=int, default=128)
    t.add_argument("--blocks", type=int, default=2)
    t.add_argument("--grad-weight", type=float, default=1.0)
    t.add_argument("--kl-weight", type=float, default=1e-4)
    t.add_argument("--crop", type=int, default=128)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--threads", type=int, default=2)
    e = sub.add_parser("eval")
    e.add_argument("run_dir")
    e.add_argument("--n", type=int, default=128)
    c = sub.add_parser("ceiling")
    c.add_argument("--out", type=Path, default=Path("benchmarks/results/feature_ceiling.json"))
    args = p.parse_args()
    if args.cmd == "baseline":
        baseline()
    elif args.cmd == "train":
        train_run(args)
    elif args.cmd == "ceiling":
        ceiling(args.out)
    else:
        evaluate(args.run_dir, args.n)
