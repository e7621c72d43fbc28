"""How fast are the 32 features? Milliseconds per 256x256 image on one core, images/s on a folder.

    python benchmarks/bench_features.py                      # flower photos, 300 files
    python benchmarks/bench_features.py --folder ~/photos --limit 0 --workers 4

Single-core numbers pin OpenCV, torch and the BLAS/OpenMP pools to one thread and report wall-clock
and CPU time (on a machine shared with other jobs the CPU time is the one to quote). The folder numbers
run :func:`course_utils.features.extract_folder` (load, decode, measure) with ``--workers``
processes, first without a cache, then twice with a fresh cache (cold, then warm).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy is imported: one core means one core

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from course_utils import data, features


def square_256(img: np.ndarray) -> np.ndarray:
    """Centre crop to a square, resize to 256x256 (the photo model's size)."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = img[top : top + side, left : left + side]
    return cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA if side > 256 else cv2.INTER_LINEAR)


def single_core(files: list[Path], n: int, repeat: int) -> dict[str, tuple[float, float, float]]:
    """Per call of extract_features and of its stages, one thread: median and mean wall-clock ms,
    and median CPU ms of this thread (the honest number on a machine shared with other jobs)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    images = [square_256(data.load_image(p)) for p in files[:n]]
    for img in images[:3]:  # warm-up: imports, lookup tables
        features.extract_features(img)
    stages = {
        "extract_features (total)": lambda im: features.extract_features(im),
        "  prepare (to RGB, resize)": lambda im: features.prepare(im),
        "  prepare + object_mask": lambda im: features.object_mask(features.prepare(im)),
    }
    out = {}
    for name, fn in stages.items():
        times, cpu = [], []
        for _ in range(repeat):
            for img in images:
                t0, c0 = time.perf_counter(), time.thread_time()
                fn(img)
                times.append(1000 * (time.perf_counter() - t0))
                cpu.append(1000 * (time.thread_time() - c0))
        out[name] = (statistics.median(times), statistics.fmean(times), statistics.median(cpu))
    return out


def folder_rate(folder: Path, workers: int, limit: int | None) -> dict[str, tuple[int, float]]:
    """(images, images/s) for extract_folder without cache, then cold and warm cache."""
    out = {}
    t0 = time.perf_counter()
    res = features.extract_folder(folder, workers=workers, cache=False, progress=False, limit=limit)
    out[f"no cache, {workers} workers"] = (len(res.paths), len(res.paths) / (time.perf_counter() - t0))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "features.npz"
        for label in ("cache cold", "cache warm"):
            t0 = time.perf_counter()
            res = features.extract_folder(folder, workers=workers, cache=cache, progress=False, limit=limit)
            out[f"{label}, {workers} workers"] = (len(res.paths), len(res.paths) / (time.perf_counter() - t0))
    if res.failures:
        print(f"{len(res.failures)} unreadable files skipped, e.g. {res.failures[0][0]}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="images to measure (default: the flower photos)")
    parser.add_argument("--limit", type=int, default=300, help="files for the folder run (0 = all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the folder run")
    parser.add_argument("--single", type=int, default=50, help="images for the single-core timing")
    parser.add_argument("--repeat", type=int, default=2, help="passes over those images")
    args = parser.parse_args(argv)

    folder = args.folder or data.resolve("flower_photos")
    files = data.list_images(folder)
    files = files[:: max(1, len(files) // args.single)]  # spread over the classes
    print(f"folder {folder}: working size {features.WORK_SIZE}, {os.cpu_count()} cores here")
    print(f"\n{'single core, 256x256 input':32s} {'median ms':>10s} {'mean ms':>10s} {'CPU ms':>10s}")
    for name, (med, mean, cpu) in single_core(files, args.single, args.repeat).items():
        print(f"{name:32s} {med:10.2f} {mean:10.2f} {cpu:10.2f}")
    print(f"\n{'folder (load + measure)':32s} {'images':>10s} {'images/s':>10s}")
    for name, (count, rate) in folder_rate(folder, args.workers, args.limit or None).items():
        print(f"{name:32s} {count:10d} {rate:10.1f}")


if __name__ == "__main__":
    main()
