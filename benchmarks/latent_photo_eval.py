"""The capstone's measurement protocol, at 256 px on decoded images (fixed before training):

256 held-out requests (the features of held-out photos, chosen with seed 0), one image each, DDIM 50,
guidance w = 2 unless a sweep says otherwise, image i drawn from its own seed. Group correlation = the
mean over the group's features of the Pearson correlation across images between requested and measured
values. The shipped 32 px pixel model (photo-32) is measured the same way after bicubic upsampling to
256 px. Realism: the Frechet distance between the 32-feature vectors of the generated images and of all
held-out photos; the floor is 256 training photos against the same held-out photos.

The sweep on 256 training requests (``--guidance-sweep 2,3,4 --n 256``) chose w = 3
(``latent.GUIDANCE``), the default here. The protocol's reading at w = 2 is kept in
``latent_photo_eval_w2.json``: the trials of the recipe (``latent_min_snr.py``, ``latent_training_seed.py``,
...) were paired with it, at w = 2 (``PAIRED_GUIDANCE``).

    python benchmarks/latent_photo_eval.py [--n 256] [--out benchmarks/results/latent_photo_eval.json]
    python benchmarks/latent_photo_eval.py --redraw 1000 \\
        --out benchmarks/results/latent_photo_eval_redraw.json   # the same requests from other noise
    python benchmarks/latent_photo_eval.py --guidance 2 --out benchmarks/results/latent_photo_eval_w2.json
    python benchmarks/latent_photo_eval.py --guidance-sweep 2,3,4 --n 256 \\
        --out benchmarks/results/latent_guidance_sweep_256.json   # the sweep that chose w = 3
    python benchmarks/latent_photo_eval.py --guidance-sweep 2,3,5 --n 48 \\
        --out benchmarks/results/latent_guidance_sweep.json
    python benchmarks/latent_photo_eval.py --guidance-sweep 2 --n 256 \\
        --out benchmarks/results/latent_training_requests.json   # the protocol's size, on training requests
    python benchmarks/latent_photo_eval.py --guidance 2 --clip-sweep 1.5,2,3,4,6 --n 64 \\
        --out benchmarks/results/latent_clip_sweep.json
    python benchmarks/latent_photo_eval.py --guidance 2 --eta-sweep 0,0.5,1 --n 64 \\
        --out benchmarks/results/latent_eta_sweep.json

The protocol's file also holds each feature's error and correlation (``per_feature``), so a group's
number can be traced to the features behind it, and the hue's error the short way round the circle.
``--model`` measures another latent checkpoint (the files ``benchmarks/results/*_simple_loss.json``
are these runs on the simple-loss model that Min-SNR weighting replaced: ``benchmarks/latent_min_snr.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from course_utils import config, features, latent, metrics, photo_data, photos
from course_utils.noise import PerSample


def draw(
    model,
    requested: torch.Tensor,
    *,
    upsample_to: int | None,
    batch: int,
    seed: int,
    steps: int,
    w: float,
    eta: float = 1.0,
):
    out = []
    for start in range(0, requested.shape[0], batch):
        part = requested[start : start + batch]
        x = photos.generate(
            model,
            part,
            steps=steps,
            guidance_scale=w,
            eta=eta,
            generator=PerSample.from_seed(seed, part.shape[0], start=start),
        )
        if upsample_to and x.shape[-1] != upsample_to:
            x = F.interpolate(x, size=(upsample_to, upsample_to), mode="bicubic", align_corners=False).clamp(-1, 1)
        out.append(x)
        print(f"  {start + part.shape[0]}/{requested.shape[0]}", end="\r", flush=True)
    return torch.cat(out)


def seconds_per_image(model, feats, *, threads: int, steps: int, w: float, repeats: int = 3) -> float:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        photos.generate(model, feats[:1], steps=steps, guidance_scale=w, seed=0)  # warm-up
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            photos.generate(model, feats[i : i + 1], steps=steps, guidance_scale=w, seed=i)
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]
    finally:
        torch.set_num_threads(old)


def paired_speed(models: dict, feats, *, threads: int, steps: int = 50, w: float = 2.0, rounds: int = 3) -> dict:
    """Seconds per 256x256 image at batch size 1 of each of ``models`` (name -> model), measured in
    turns (each round times every model once), so that a slower minute of the machine falls on all of
    them: per model the median over the rounds of :func:`seconds_per_image`."""
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(seconds_per_image(model, feats, threads=threads, steps=steps, w=w))
    return {name: round(sorted(t)[len(t) // 2], 3) for name, t in times.items()}


def held_out_requests(ps, held_idx, n: int) -> torch.Tensor:
    """The protocol's requests: the features of ``n`` held-out photos, chosen with seed 0."""
    pick = held_idx[torch.randperm(len(held_idx), generator=torch.Generator().manual_seed(0))[:n]]
    return ps.features[pick]


def protocol_scores(
    model, requested, real_held, *, upsample_to: int | None, steps: int, w: float, seed: int = 0
) -> dict:
    """Draw one image per request (image i from its own seed, ``noise.image_seed(seed, i)``; the
    protocol's ``seed`` is 0), measure it, and score it: per group and per feature, the hue both ways
    round, and the feature-space FD to ``real_held``."""
    started = time.perf_counter()
    images = draw(model, requested, upsample_to=upsample_to, batch=16, seed=seed, steps=steps, w=w)
    seconds = time.perf_counter() - started
    measured = features.extract_batch(images)
    scores = photos.feature_fidelity(requested, measured)
    print()
    print(photos.format_fidelity(scores))
    return dict(
        fidelity={g: {k: round(v, 4) for k, v in s.items()} for g, s in scores.items()},
        fd_vs_held_out=round(metrics.frechet_distance(measured.numpy(), real_held), 4),
        seconds_for_all=round(seconds, 1),
        per_feature={
            name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            for name, row in photos.feature_fidelity_by_feature(requested, measured).items()
        },
        dominant_hue={k: round(v, 4) for k, v in photos.hue_errors(requested, measured).items()},
    )


def trained_summary(record: dict, build_seconds: float, **more) -> dict:
    """What a benchmark that trained a latent model keeps of its record: ``more`` (e.g. the setting
    it changed), epochs, steps, losses, the record's training line, the seconds this call spent
    building it (0 when the run had finished before) and the machine."""
    from course_utils import checkpoints

    return dict(
        **more,
        epochs=record["recipe"]["epochs"],
        steps=record["steps"],
        epoch_losses=[round(v, 4) for v in record["epoch_losses"]],
        record=record["recipe"]["trained"],
        build_seconds_this_call=round(build_seconds, 1),
        machine=checkpoints.machine_description("cpu"),
    )


def training_sweep(model, ps, train_idx, settings: dict, *, n: int, steps: int) -> dict:
    """Choose a sampling setting on TRAINING photos' requests (the held-out ones stay for the
    protocol): per setting ``name -> (x0 bound, guidance w, eta)``, the feature error and correlation
    per group with the shuffled-request baseline, and the feature-space FD against the other training photos."""
    pick = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(2))]
    requested, others = ps.features[pick[:n]], ps.features[pick[n:]].numpy()
    out = {}
    for name, (bound, w, eta) in settings.items():
        model.x0_clip = bound
        started = time.perf_counter()
        images = draw(model, requested, upsample_to=None, batch=16, seed=0, steps=steps, w=w, eta=eta)
        measured = features.extract_batch(images)
        groups = photos.feature_fidelity(requested, measured)
        out[name] = dict(
            mae=round(groups["ALL"]["mae"], 4),
            corr=round(groups["ALL"]["corr"], 4),
            fd=round(metrics.frechet_distance(measured.numpy(), others), 4),
            groups={g: {k: round(v, 4) for k, v in s.items()} for g, s in groups.items()},
            seconds=round(time.perf_counter() - started, 1),
        )
        print(f"\n{name}: MAE {out[name]['mae']}, corr {out[name]['corr']}, FD {out[name]['fd']}")
        print(photos.format_fidelity(groups))
    return out


RESULTS = Path(__file__).resolve().parent / "results"
REDRAW_SEED = 1000  # the second draw of the protocol's requests (``latent_min_snr.py --redraw``)
PAIRED_GUIDANCE = 2.0  # the guidance of the trials' paired readings (the protocol's before the sweep chose 3)
_KEPT = ("fidelity", "fd_vs_held_out", "dominant_hue")  # what a paired reading keeps of protocol_scores


def shipped_scores() -> dict:
    """The shipped model's three readings at ``PAIRED_GUIDANCE``, from the files that hold them: the
    protocol (``latent_photo_eval_w2.json``), the same requests from other noise (``latent_min_snr.json``'s
    redraw, seed ``REDRAW_SEED``) and the 256 training requests (``latent_training_requests.json``).
    A run of the recipe measured by :func:`three_readings` is paired with them image by image."""
    protocol_file = json.loads((RESULTS / "latent_photo_eval_w2.json").read_text())
    if protocol_file["protocol"]["guidance"] != PAIRED_GUIDANCE:
        raise SystemExit(f"latent_photo_eval_w2.json was read at guidance {protocol_file['protocol']['guidance']:g}")
    protocol = protocol_file["latent (256 px)"]
    redraw = json.loads((RESULTS / "latent_min_snr.json").read_text())["held_out_redraw"]
    if redraw["seed"] != REDRAW_SEED:
        raise SystemExit(f"latent_min_snr.json's redraw used seed {redraw['seed']}, not {REDRAW_SEED}")
    train = json.loads((RESULTS / "latent_training_requests.json").read_text())["guidance_scales"][str(PAIRED_GUIDANCE)]
    return dict(
        held_out={k: protocol[k] for k in _KEPT},
        held_out_redraw=redraw["min_snr"],
        training_requests={k: train[k] for k in ("groups", "fd", "corr", "mae")},
    )


def three_readings(model, ps, train_idx, held_idx, *, n: int, label: str) -> dict:
    """A trained latent model's readings under the shipped model's requests and seeds: the protocol
    (held-out requests, seed 0), the same requests from other noise (``REDRAW_SEED``) and ``n``
    training requests (``training_sweep``), all at ``PAIRED_GUIDANCE``."""
    requested, real_held = held_out_requests(ps, held_idx, n), ps.features[held_idx].numpy()
    print(f"held-out requests, {label}:")
    w = PAIRED_GUIDANCE
    held_out = protocol_scores(model, requested, real_held, upsample_to=None, steps=50, w=w)
    print(f"held-out requests, seed {REDRAW_SEED}, {label}:")
    redraw = protocol_scores(model, requested, real_held, upsample_to=None, steps=50, w=w, seed=REDRAW_SEED)
    train = training_sweep(model, ps, train_idx, {str(w): (model.x0_clip, w, 1.0)}, n=n, steps=50)[str(w)]
    return dict(
        held_out=held_out,
        held_out_redraw=dict(seed=REDRAW_SEED, **{k: redraw[k] for k in _KEPT}),
        training_requests={k: train[k] for k in ("groups", "fd", "corr", "mae")},
    )


def write_paired_run(
    model, record, build_seconds: float, *, shipped: dict, key: str, label: str, n: int, out: Path, **more
) -> dict:
    """Measure a trained run of the recipe by :func:`three_readings` and write it to ``out`` beside
    ``shipped``, the shipped model's readings under the same requests and seeds (:func:`shipped_scores`,
    read by the caller before it trains): ``{"trained": trained_summary(record, build_seconds, **more),
    key: readings, "shipped": shipped}``."""
    ps = photo_data.load_photos(size=256, progress=False)
    train_idx, held_idx = latent.split_indices(ps.paths, ps.folder)
    result = {
        "trained": trained_summary(record, build_seconds, **more),
        key: three_readings(model, ps, train_idx, held_idx, n=n, label=label),
        "shipped": shipped,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


def paired_run_parser(out_name: str, doc: str | None = None) -> argparse.ArgumentParser:
    """The options every trial of the recipe takes: ``--n`` requests per reading, ``--run-dir`` (its
    training run, resumed) and ``--out`` (default ``benchmarks/results/<out_name>``)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256, help="requests per reading (the protocol's 256)")
    p.add_argument("--run-dir", type=Path, default=None, help="the training run's folder, resumed when killed")
    p.add_argument("--out", type=Path, default=RESULTS / out_name)
    return p


def train_and_compare(
    name: str, *, key: str, label: str, n: int, out: Path, run_dir: Path | None = None, summary=None, **build
) -> dict:
    """Train the shipped recipe with the changes ``build`` names (keywords of
    :func:`latent.build_latent_model`) in ``runs/<name>``, resumed when killed (a finished run is
    measured, not trained again), then measure it beside the shipped model (:func:`write_paired_run`).
    ``summary(record)``: what of the trained record to keep beside the training time; it may refuse a
    record that is not this run's by raising."""
    torch.set_num_threads(2)
    shipped = shipped_scores()  # read first: a missing file stops the run before any training
    run_dir = run_dir or config.runs_dir() / name
    weights = run_dir / f"{name}.safetensors"
    started = time.time()
    if not weights.is_file():
        latent.build_latent_model(out=weights, run_dir=run_dir, **build)
    build_seconds = time.time() - started
    model, record = latent.load_latent_model(weights, device=torch.device("cpu"))
    more = summary(record) if summary is not None else {}
    return write_paired_run(model, record, build_seconds, shipped=shipped, key=key, label=label, n=n, out=out, **more)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=latent.GUIDANCE, help="default: latent.GUIDANCE (3)")
    p.add_argument("--model", default="photo-latent")
    p.add_argument(
        "--redraw",
        type=int,
        default=None,
        help="draw the held-out requests again from image seeds of this seed (the protocol's is 0): latent model only",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/latent_photo_eval.json"))
    p.add_argument(
        "--clip-sweep", default=None, help="comma-separated x0 bounds to compare on training requests, then stop"
    )
    p.add_argument(
        "--guidance-sweep",
        default=None,
        help="comma-separated guidance scales to compare on training requests, then stop",
    )
    p.add_argument(
        "--eta-sweep", default=None, help="comma-separated DDIM etas to compare on training requests, then stop"
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    ps = photo_data.load_photos(size=256, progress=False)
    train_idx, held_idx = latent.split_indices(ps.paths, ps.folder)
    requested = held_out_requests(ps, held_idx, args.n)
    if args.clip_sweep or args.guidance_sweep or args.eta_sweep:
        model, _ = latent.load_latent_model(args.model, device=torch.device("cpu"))
        if args.clip_sweep:
            key, values = "bounds", [float(b) for b in args.clip_sweep.split(",")]
            settings = {str(b): (b, args.guidance, 1.0) for b in values}
        elif args.guidance_sweep:
            key, values = "guidance_scales", [float(w) for w in args.guidance_sweep.split(",")]
            settings = {str(w): (model.x0_clip, w, 1.0) for w in values}
        else:
            key, values = "etas", [float(e) for e in args.eta_sweep.split(",")]
            settings = {str(e): (model.x0_clip, args.guidance, e) for e in values}
        sweep = training_sweep(model, ps, train_idx, settings, n=args.n, steps=args.steps)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"n": args.n, "steps": args.steps, "guidance": args.guidance, key: sweep}, indent=1)
        )
        return
    real_held = ps.features[held_idx].numpy()
    if args.redraw is not None:
        model, _ = latent.load_latent_model(args.model, device=torch.device("cpu"))
        print(f"held-out requests, seed {args.redraw}, guidance {args.guidance:g}:")
        scores = protocol_scores(
            model, requested, real_held, upsample_to=None, steps=args.steps, w=args.guidance, seed=args.redraw
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        protocol = dict(n=len(requested), steps=args.steps, guidance=args.guidance, seed=args.redraw)
        args.out.write_text(json.dumps({"protocol": protocol, "latent (256 px)": scores}, indent=1))
        print(f"wrote {args.out}")
        return
    floor_rows = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(1))[: args.n]]
    result = dict(
        protocol=dict(n=len(requested), steps=args.steps, guidance=args.guidance, seed=0, held_out=len(held_idx)),
        fd_floor_real_vs_real=round(metrics.frechet_distance(ps.features[floor_rows].numpy(), real_held), 4),
    )
    models = {}
    model, _ = latent.load_latent_model(args.model, device=torch.device("cpu"))
    models["latent (256 px)"] = (model, None)
    p32, _ = photos.load_photo_model("photo-32.safetensors", device=torch.device("cpu"))
    models["photo-32 upsampled to 256"] = (p32, 256)
    for name, (m, up) in models.items():
        print(f"\n{name}:")
        result[name] = protocol_scores(m, requested, real_held, upsample_to=up, steps=args.steps, w=args.guidance)
        fd, floor = result[name]["fd_vs_held_out"], result["fd_floor_real_vs_real"]
        print(f"{name}: FD {fd:.3f} (floor {floor:.3f}), {result[name]['seconds_for_all']:.0f} s")
    result["latent seconds per 256px image, batch 1"] = {
        f"{t} thread{'s' if t > 1 else ''}": round(
            seconds_per_image(model, requested, threads=t, steps=args.steps, w=args.guidance), 2
        )
        for t in (2, 1)
    }
    print(result["latent seconds per 256px image, batch 1"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
