"""How notebook 08 chose its anagram pairs: every ordered pair of digits and both views, by control.

A visual anagram of ``(a, b)`` only demonstrates the wrapper if plain digits of class ``a``, seen
through the view, do not already read as ``b`` (a turned 6 is a 9). For each view (half turn,
vertical flip) this draws 64 plain guided samples of every class (the controls), then, for every
ordered pair whose control is at most 25%, 16 anagrams with ``editing.anagram`` on the guided
``mnist-cfg`` model (w = 3, Euler 20 steps). The course classifier reads each image upright and
through the view. Run from the repository root::

    python benchmarks/anagram_pairs.py            # about 6 minutes on two CPU cores

It prints one line per candidate and writes ``benchmarks/results/anagram_pairs.json``. The
notebook then measures its chosen pairs on other seeds, so the search does not flatter them.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from course_utils import editing, guidance, metrics, pretrained, samplers, schedules  # noqa: E402

VIEWS = {"rotate_180": editing.rotate_180, "flip_vertical": editing.flip_vertical}
OUT = Path(__file__).resolve().parent / "results" / "anagram_pairs.json"


def main(n: int = 16, n_control: int = 64, max_control: float = 0.25) -> list[dict]:
    guided = guidance.cfg(pretrained.load_or_train("mnist-cfg"), 3.0)
    grid = schedules.time_grid(20)

    def sample(model_fn, n, seed, cond=None):
        x1 = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
        return samplers.euler(model_fn, x1, grid, cond=cond)

    control = {}  # (a, view) -> share of plain a's read as each class through the view
    for a in range(10):
        plain = sample(guided, n_control, 1000 + a, cond=torch.full((n_control,), a))
        for name, view in VIEWS.items():
            control[a, name] = torch.bincount(metrics.classify(view(plain)), minlength=10).float() / n_control
    rows = []
    for (a, b), (name, view) in itertools.product(itertools.permutations(range(10), 2), VIEWS.items()):
        c = control[a, name][b].item()
        if c > max_control:
            continue
        images = sample(editing.anagram(guided, a, b, view=view), n, 10 * a + b)
        upright, turned = metrics.classify(images) == a, metrics.classify(view(images)) == b
        row = dict(
            a=a,
            b=b,
            view=name,
            upright=upright.float().mean().item(),
            turned=turned.float().mean().item(),
            both=(upright & turned).float().mean().item(),
            control=c,
        )
        rows.append(row)
        print(
            f"{a}/{b} {name:>13}: upright {row['upright']:4.0%}  turned {row['turned']:4.0%}  "
            f"both {row['both']:4.0%}  control {c:4.0%}",
            flush=True,
        )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(dict(n=n, n_control=n_control, rows=rows), indent=1) + "\n")
    return rows


if __name__ == "__main__":
    best = sorted(main(), key=lambda r: r["both"] - r["control"], reverse=True)[:8]
    print("best by both - control:", ", ".join(f"{r['a']}/{r['b']} {r['view']}" for r in best))
