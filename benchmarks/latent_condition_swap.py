"""When does the shipped latent model decide each group of features? A request swapped mid-way.

Each image starts from request A (a training photo's features) and, after the first k of the 50 DDIM
steps, continues under request B, another training photo's features, the same derangement for every
k (``photos.generate(..., then=B, switch_after=k)``). Guidance 2, eta 1 and the noise of image i are
the protocol's. For each k the 32 features of the decoded images are scored, per group, against A
and against B (the capstone's group correlation): a group whose correlation with A is already near
its full value after a few steps is decided by the early, noisy steps, where the layout of the image
forms; one that follows B until late is decided by the last ones.

k = 0 is B all the way (A's correlation is then a shuffled baseline), k = 50 is A all the way.

    python benchmarks/latent_condition_swap.py [--n 256] [--switch 0,2,5,10,20,50] \\
        [--out benchmarks/results/latent_condition_swap.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from course_utils import features, latent, photo_data, photos  # noqa: E402
from course_utils.noise import PerSample  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=256, help="training requests (the 256 of the training-request reading)")
    p.add_argument("--switch", default="0,2,5,10,20,50", help="steps under request A before B takes over")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/latent_condition_swap.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    steps, batch = 50, 16
    switches = [int(k) for k in args.switch.split(",")]
    ps = photo_data.load_photos(size=256, progress=False)
    train_idx, _ = latent.split_indices(ps.paths, ps.folder)
    pick = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(2))[: args.n]]
    first = ps.features[pick]  # training_sweep's requests in latent_photo_eval.py, the same order
    order = torch.randperm(args.n, generator=torch.Generator().manual_seed(3))
    then = first[torch.roll(order, 1)[torch.argsort(order)]]  # a derangement: no image keeps its own request
    assert not any(torch.equal(a, b) for a, b in zip(first, then))
    model, record = latent.load_latent_model(device=torch.device("cpu"))
    result = dict(n=args.n, steps=steps, guidance=2.0, eta=1.0, model_sha256=record["sha256"], switch={})
    for k in switches:
        started = time.perf_counter()
        images = []
        for start in range(0, args.n, batch):
            part = slice(start, start + batch)
            images.append(
                photos.generate(
                    model,
                    first[part],
                    steps=steps,
                    guidance_scale=2.0,
                    generator=PerSample.from_seed(0, first[part].shape[0], start=start),
                    then=then[part],
                    switch_after=k,
                )
            )
            print(f"  k = {k}: {start + batch}/{args.n}", end="\r", flush=True)
        measured = features.extract_batch(torch.cat(images))
        scores = {name: photos.feature_fidelity(asked, measured) for name, asked in (("A", first), ("B", then))}
        result["switch"][str(k)] = {
            g: {name: round(scores[name][g]["corr"], 4) for name in scores} for g in scores["A"]
        }
        print(f"\nafter {k} steps under A ({time.perf_counter() - started:.0f} s): correlation with A / with B")
        for g, s in result["switch"][str(k)].items():
            print(f"  {g:10s} {s['A']:6.2f} {s['B']:6.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
