"""How notebook 08 chose its hybrid pairs: which far digits survive a hybrid at 28 pixels.

A hybrid (far class, near class) reads "both ways" when the course classifier reads the image at
full size as the near class and its 14x14 version (area-shrunk, then upsampled) as the far class.
The control is the same test on plain guided samples of the near class. For far classes 0, 1 and 7,
every near class and split widths sigma 1.5 and 2 pixels, this draws 32 hybrids with
``editing.hybrid`` on the guided ``mnist-cfg`` model (w = 3, Euler 20 steps). Run from the
repository root::

    python benchmarks/hybrid_pairs.py            # about 10 minutes on two CPU cores

It prints one line per setting and writes ``benchmarks/results/hybrid_pairs.json``. The notebook
then measures its chosen pairs on 64 draws at more widths.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from course_utils import editing, guidance, metrics, pretrained, samplers, schedules  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "hybrid_pairs.json"
FAR_CLASSES = (0, 1, 7)
SIGMAS = (1.5, 2.0)


def far_view(images: torch.Tensor) -> torch.Tensor:
    """The 14x14 view of notebook 08: shrink by area, then bilinear back to 28x28."""
    return F.interpolate(F.interpolate(images, size=14, mode="area"), size=28, mode="bilinear", align_corners=False)


def main(n: int = 32) -> list[dict]:
    guided = guidance.cfg(pretrained.load_or_train("mnist-cfg"), 3.0)
    grid = schedules.time_grid(20)

    def sample(model_fn, seed, cond=None):
        x1 = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
        return samplers.euler(model_fn, x1, grid, cond=cond)

    def both(images, far, near):
        return ((metrics.classify(images) == near) & (metrics.classify(far_view(images)) == far)).float().mean().item()

    plain = {c: sample(guided, 7, cond=torch.full((n,), c)) for c in range(10)}
    rows = []
    for far in FAR_CLASSES:
        for near in (c for c in range(10) if c != far):
            control = both(plain[near], far, near)
            for sigma in SIGMAS:
                images = sample(editing.hybrid(guided, far, near, sigma=sigma), 100 + 10 * far + near)
                near_rate = (metrics.classify(images) == near).float().mean().item()
                row = dict(far=far, near=near, sigma=sigma, near_rate=near_rate, both=both(images, far, near))
                row["control"] = control
                rows.append(row)
                print(
                    f"far {far} near {near} sigma {sigma}: full size read as {near} {row['near_rate']:4.0%}, "
                    f"both readings {row['both']:4.0%} (control {control:4.0%})",
                    flush=True,
                )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(dict(n=n, rows=rows), indent=1) + "\n")
    return rows


if __name__ == "__main__":
    best = sorted(main(), key=lambda r: r["both"] - r["control"], reverse=True)[:8]
    print("best by both - control:", ", ".join(f"{r['far']}|{r['near']} sigma {r['sigma']}" for r in best))
