"""How the shipped few-step student (``mnist-fewstep``) was chosen: candidates at equal CPU budgets.

Every candidate starts from the teacher's weights (``mnist-cfg``), trains on the same teacher pairs
(guidance 3, 20 Euler steps) with the same optimiser, batch and number of steps, and differs only
in the training times of the reflow loss:

- ``a``: reflow, t uniform in [0, 1] (2-rectified flow);
- ``b``: reflow, half of the times at t = 1 (the one-step point), half uniform;
- ``c``: one-step distillation only (every time at t = 1; InstaFlow's loss);
- ``d``: reflow (``a``) for half the steps, then one-step distillation for the other half.

Each is scored on 1,000 fresh noises (seed 0, none of them a pair's) at 1, 2 and 4 Euler steps by
the course classifier. Run from the repository root, one thread::

    OMP_NUM_THREADS=1 python benchmarks/fewstep_candidates.py pairs
    OMP_NUM_THREADS=1 python benchmarks/fewstep_candidates.py candidates --epochs 10
    OMP_NUM_THREADS=1 python benchmarks/fewstep_candidates.py teacher
    OMP_NUM_THREADS=1 python benchmarks/fewstep_candidates.py final --from b --epochs 60
    OMP_NUM_THREADS=1 python benchmarks/fewstep_candidates.py ship --from b

Results go to ``runs/fewstep/`` (JSON per candidate); every stage resumes after an interruption.
``ship`` exports the registry's ``mnist-fewstep`` recipe from the finished run (its epochs must be
the run's) into the checkpoint folder, with the candidates' table and the scores in its record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from course_utils import config, fewstep, files, metrics, pretrained  # noqa: E402
from course_utils.noise import PerSample  # noqa: E402

NAME = "mnist-fewstep"
METRICS = ("accuracy", "fd", "confident")
CANDIDATES = {"a": 0.0, "b": 0.5, "c": 1.0}  # p_one of each; d is a's first half, then c's loss
ABOUT = {
    "a": "a: reflow, t uniform",
    "b": "b: reflow, half of the times at t = 1",
    "c": "c: one-step distillation (t = 1 only)",
    "d": "d: reflow, then one-step distillation",
}


def out_dir() -> Path:
    folder = config.runs_dir() / "fewstep"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


N_SCORE = 1000


def score_student(model, n: int | None = None, steps=(1, 2, 4), seed: int = 0) -> dict:
    """Accuracy, FD and confident share at each step count, on n fresh noises (image i: seed 0, i)."""
    n = n or N_SCORE
    labels = pretrained.balanced_labels(n)
    z = PerSample.from_seed(seed, n).randn((n, 1, 28, 28))
    rows = {}
    for k in steps:
        counted = fewstep.CountEvaluations(model)
        x = torch.cat([fewstep.sample(counted, z[i : i + 250], k, cond=labels[i : i + 250]) for i in range(0, n, 250)])
        q = metrics.digit_quality(x, labels)
        rows[k] = dict(nfe=counted.nfe(n), accuracy=q["accuracy"], fd=q["fd"], confident=q["confident"])
        print(f"  {k} step(s): NFE {rows[k]['nfe']:g}, " + ", ".join(f"{m} {rows[k][m]:.3f}" for m in METRICS))
    return rows


def score_teacher(r, steps: int) -> dict:
    """The guided teacher with ``steps`` Euler steps on the same noises (two evaluations per step)."""
    n = N_SCORE
    counted = fewstep.CountEvaluations(pretrained.load(r.extra["teacher"]))
    teacher = pretrained.recipe(r.extra["teacher"])
    x = pretrained.generate(counted, teacher, n, steps=steps, guidance_scale=r.extra["guidance"], seed=0)
    q = metrics.digit_quality(x, pretrained.balanced_labels(n))
    return dict(nfe=counted.nfe(n), accuracy=q["accuracy"], fd=q["fd"], confident=q["confident"])


def recipe(p_one: float, epochs: int):
    r = pretrained.recipe(NAME)
    return replace(fewstep.student_recipe(r, p_one=p_one), epochs=epochs, sha256=None, trained="")


def train(label: str, p_one: float, epochs: int, run_dir: Path) -> dict:
    started = time.perf_counter()
    model = fewstep.train_student(
        f"{NAME}-{label}", recipe(p_one, epochs), fast=False, out=out_dir() / f"{label}.safetensors", run_dir=run_dir
    )
    record = pretrained.checkpoints.read_record(out_dir() / f"{label}.safetensors")
    print(f"candidate {label}: p_one {p_one}, {epochs} epochs, {record['train_seconds_total']:.0f} s of training")
    result = dict(
        label=label,
        about=ABOUT[label[0]],
        p_one=p_one,
        epochs=epochs,
        steps=record["steps"],
        train_seconds=record["train_seconds_total"],
        this_call_seconds=round(time.perf_counter() - started, 1),
        scores=score_student(model.float()),
    )
    (out_dir() / f"{label}-{epochs}.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("stage", choices=("pairs", "candidates", "teacher", "final", "ship"))
    p.add_argument("--candidate-epochs", type=int, default=5, help="ship: the budget of the candidates' table")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--only", default="abcd")
    p.add_argument("--from", dest="source", default=None, help="final: the candidate to continue")
    args = p.parse_args()
    r = pretrained.recipe(NAME)
    if args.stage == "pairs":
        started = time.perf_counter()
        z, labels, x = fewstep.pairs_of(r)
        print(f"{len(z)} pairs ready after {time.perf_counter() - started:.0f} s")
    elif args.stage == "teacher":
        row = score_teacher(r, 20)
        print(f"teacher, 20 steps, guidance {r.extra['guidance']:g}: {row}")
        (out_dir() / "teacher.json").write_text(json.dumps(row, indent=1))
    elif args.stage == "candidates":
        half = args.epochs // 2
        run_d = out_dir() / "run-d"
        for label in args.only:
            if label == "a" and "d" in args.only and not (run_d / f"epoch_{half:04d}.json").exists():
                # a run keeps only its newest checkpoint: stop a at half the budget and keep a copy for d
                run_a = out_dir() / "run-a"
                fewstep.train_student(
                    f"{NAME}-a", recipe(0.0, half), fast=False, out=out_dir() / "a-half.safetensors", run_dir=run_a
                )
                run_d.mkdir(exist_ok=True)
                for suffix in (".safetensors", ".json"):
                    shutil.copy(run_a / f"epoch_{half:04d}{suffix}", run_d / f"epoch_{half:04d}{suffix}")
            if label in CANDIDATES:
                train(label, CANDIDATES[label], args.epochs, out_dir() / f"run-{label}")
            elif label == "d":  # a's checkpoint at half the budget, continued with the one-step loss
                train("d", 1.0, args.epochs, run_d)
    elif args.stage == "final":
        p_one = CANDIDATES.get(args.source, 1.0)
        train(args.source, p_one, args.epochs, out_dir() / f"run-{args.source}")
    elif args.stage == "ship":  # export the registry's recipe from the finished run, with the measurements
        model = pretrained.train_recipe(NAME, fast=False, run_dir=out_dir() / f"run-{args.source}")
        path = pretrained.checkpoint_path(NAME)
        record = pretrained.record(NAME)
        record["candidates"] = [
            json.loads((out_dir() / f"{label}-{args.candidate_epochs}.json").read_text()) for label in "abcd"
        ]
        print("scoring the shipped student on 1,000 samples")
        record["scores"] = dict(
            teacher_20_steps=json.loads((out_dir() / "teacher.json").read_text()),
            teacher_few_steps={k: score_teacher(r, k) for k in (2, 1)},
            student=score_student(model.float()),
        )
        record["notes"] = (
            f"Teacher {r.extra['teacher']} with guidance {r.extra['guidance']:g} at {r.extra['teacher_steps']} Euler "
            f"steps made {r.extra['pairs']} pairs (noise seeds {r.extra['pair_seed']} * 1,000,003 + i); the student "
            "started from the teacher's weights. Candidates and scores: benchmarks/fewstep_candidates.py, on "
            "1,000 fresh noises (seed 0), classifier mnist-classifier. Times are wall-clock on a machine shared "
            "with other jobs (load average 3-6), one torch thread."
        )
        files.atomic_write(path.with_suffix(".json"), json.dumps(record, indent=1))
        print(f"shipped {path} ({record['sha256']})")


if __name__ == "__main__":
    main()
