"""Bad requests fail fast and clearly: an inventory of what each public entry point does with bad input.

Every entry point below was tried with the same kinds of bad input: counts below 1 or not whole,
NaN or infinite scales, seeds out of range, steps beyond the model, unknown names, out-of-range
times and labels, unwritable outputs, and missing, truncated, corrupt or oversized files. Each row
is one or more parametrised cases of this module; every case asserts the error's type, that its
message names the argument or file, and, where it matters, that no model ran (the models here
raise if called) and nothing was written.

=========================================  =================================  ===================================
entry point                                failure family                     expected
=========================================  =================================  ===================================
``python -m course_utils sample``          count < 1 / not a number,          exit 2, one line on stderr naming
                                           NaN or infinite ``--guidance``,    the option; no model loaded, no
                                           ``--seed`` < 0 or not whole,       sample drawn, nothing written
                                           ``--steps`` > T (DDPM), ``--out``
                                           a folder or under a file,
                                           ``--guidance`` on an unconditional
                                           model, unknown model
``python -m course_utils train NAME``      unknown model, ``--epochs 0``,     exit 2, one line (the file and the
                                           truncated MNIST                    fix for a damaged file)
``python -m course_utils list``            extra argument                     exit 2, one line
``pretrained.generate``                    n, steps (> T for DDPM),           BadRequest naming the argument;
                                           guidance_scale, labels, seed,      the model never runs
                                           generator
``photos.generate`` / ``generate_like`` /  n, steps, guidance_scale, eta,     BadRequest naming the argument (the
``feature_sweep`` / ``measure_fidelity``   seed, ``only`` names, values,      known names for ``only``); the
                                           batch; a bad image file            model never runs; BadFile naming
                                                                              the image
``photo_data.check_features`` /            n, NaN features, size, limit,      BadRequest; BadFile for a missing
``load_photos``                            workers, missing folder            folder
``samplers.ddpm/ddim/euler/heun``          grid with NaN, times outside       BadRequest before the first model
                                           [0, 1], not decreasing, NaN        call
                                           x_init, eta
``guidance.cfg`` / ``negative_guidance``   non-finite scale, bad negative     BadRequest when built
``editing.sdedit/inpaint/hybrid/anagram``  grid with NaN, i_start, resample,  BadRequest before any model call
                                           mask, sigma, ksize, conditions
``features.to_rgb/extract_features/``      NaN pixels, value_range, shape,    BadRequest; BadFile for a missing
``extract_batch/extract_folder``           workers, limit, missing folder     folder
``data.load_image``                        missing, truncated, not an image,  BadFile (``UnreadableFile``, also a
                                           header over ``MAX_PIXELS``,        ValueError) naming the file; an
                                           decompression bomb                 oversized one is never decoded
``data.load_mnist`` / ``read_idx``         truncated or corrupt ``.gz``,      BadFile naming the file and the fix
                                           truncated IDX, not IDX, counts     (delete it / COURSE_DATA_DIR);
                                           that disagree; split, scale,       BadRequest for the arguments
                                           limit
``metrics.*``                              NaN images, data_range, shapes,    BadRequest before the classifier
                                           labels, threshold, too few         loads
                                           images, mismatched spaces
folders (``extract_folder``,               a bomb, a truncated and an         the others measured, the bad ones
``load_photos``)                           oversized file among good ones     listed in ``failures`` by name
bit depth (``load_image``, ``to_rgb``)     16-bit PNG vs its 8-bit version    the same [0, 1] pixels within 1/255
worker pool (``extract_folder``)           a script without a main guard      top level runs once, all measured,
                                                                              one warning
=========================================  =================================  ===================================

Tried: 138 cases (19 on the command line, 98 API calls, 13 damaged files, 8 folder, bit-depth and
worker-pool checks); all 138 fail clearly (or, for folders, skip and list the bad files) as the
table says. ``test_inventory_counts`` keeps these numbers true.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
import textwrap
import types
import zlib
from pathlib import Path
from typing import Callable, NamedTuple

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from course_utils import (
    data,
    editing,
    features,
    guidance,
    metrics,
    photo_data,
    photos,
    predictions,
    pretrained,
    samplers,
    schedules,
)
from course_utils.__main__ import main
from course_utils.errors import BadFile, BadRequest, CourseError
from course_utils.noise import PerSample
from course_utils.unet import UNetConfig

NAN, INF = float("nan"), float("inf")
ROOT = Path(__file__).resolve().parent.parent
REFUSED = "the model ran: the request should have been refused before any compute"


class Untouchable(nn.Module):
    """A model that fails the test if it is ever called: proof that a check came first."""

    def __init__(self, cfg: UNetConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.zeros(1))
        self.register_buffer("cond_mean", torch.full((32,), 0.5))

    def forward(self, *args, **kwargs):
        raise AssertionError(REFUSED)


def untouchable_fn(x, t, cond=None):
    raise AssertionError(REFUSED)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (its pixel data is a few bytes)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def save_png(path: Path, rgb: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 or uint16 RGB as a PNG (16-bit when uint16)."""
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


def good_image(seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = rng.integers(30, 220, 3)
    cv2.circle(img, (size // 2, size // 2), size // 4, tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """What the cases need: models that must not run, recipes, image files good and bad."""
    tmp = tmp_path_factory.mktemp("requests")
    ok = save_png(tmp / "ok.png", good_image(0))
    truncated = tmp / "truncated.png"
    truncated.write_bytes(ok.read_bytes()[:60])
    (tmp / "bomb.png").write_bytes(png_claiming(20000, 20000))  # 400 M pixels: Pillow itself refuses
    (tmp / "huge.png").write_bytes(png_claiming(10000, 6000))  # 60 M pixels: over data.MAX_PIXELS
    (tmp / "text.png").write_text("not an image")
    photo_cfg = UNetConfig.photo_small(16, base_channels=8, groups=4)
    return types.SimpleNamespace(
        tmp=tmp,
        photo=predictions.with_prediction(Untouchable(photo_cfg), "eps"),
        mnist=Untouchable(),
        cfg=pretrained.recipe("mnist-cfg"),
        ddpm=pretrained.recipe("mnist-ddpm"),
        fm=pretrained.recipe("mnist-fm"),
        f0=torch.full((32,), 0.5),
        x=torch.zeros(2, 1, 8, 8),
        schedule=schedules.cosine_schedule(1000),
    )


@pytest.fixture(autouse=True)
def _classifier_must_not_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the classifier loaded: the request should have been refused first")

    monkeypatch.setattr(metrics, "load_classifier", refuse)


# ---------------------------------------------------------------------------------------------
# The command line: exit 2, one line on stderr naming the option, nothing loaded, sampled or written


CLI_CASES = [
    (["sample", "mnist-cfg", "--guidance", "nan"], "--guidance"),
    (["sample", "mnist-cfg", "--guidance", "inf"], "--guidance"),
    (["sample", "mnist-cfg", "--guidance", "-inf"], "--guidance"),
    (["sample", "mnist-cfg", "--seed", "-1"], "--seed"),
    (["sample", "mnist-cfg", "--seed", "1.5"], "--seed"),
    (["sample", "mnist-cfg", "--seed", str(2**32)], "--seed"),
    (["sample", "mnist-cfg", "--n", "-1"], "--n"),
    (["sample", "mnist-cfg", "--n", "ten"], "--n"),
    (["sample", "mnist-cfg", "--batch", "0"], "--batch"),
    (["sample", "mnist-cfg", "--steps", "0"], "--steps"),
    (["sample", "mnist-ddpm", "--steps", "1001"], "--steps"),
    (["sample", "mnist-fm", "--guidance", "3"], "--guidance"),
    (["sample", "mnist-cfg", "--out", "{blocker}/samples.npz"], "--out"),
    (["sample", "mnist-cfg", "--out", "{tmp}"], "--out"),
    (["sample", "mnist-gan"], "mnist-gan"),
    (["train", "mnist-gan"], "mnist-gan"),
    (["train", "mnist-ddpm", "--epochs", "0"], "--epochs"),
    (["list", "--all"], "--all"),
]


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    """Exit status and the non-empty stderr lines of one in-process command."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("argv, names", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_refuses_in_one_line_before_any_work(argv, names, tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("a model was loaded, trained or sampled before the options were checked")

    for name in ("load", "generate", "train_recipe"):
        monkeypatch.setattr(pretrained, name, no_work)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = tmp_path / "out" / "samples.npz"
    argv = [a.format(blocker=blocker, tmp=tmp_path) for a in argv]
    if argv[0] == "sample" and "--out" not in argv:
        argv += ["--out", str(out)]
    code, lines = run_cli([*argv, "--no-progress"] if argv[0] != "list" else argv, capsys)
    assert code == 2
    assert len(lines) == 1 and "error" in lines[0] and names in lines[0], lines
    assert not out.exists() and not (tmp_path / "out").exists()


@pytest.fixture
def mnist_folder(tmp_path, monkeypatch):
    """A small, valid MNIST set in its own COURSE_DATA_DIR; tests damage one file of it."""
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    images = struct.pack(">I3I", 0x0803, 5, 28, 28) + bytes(5 * 28 * 28)
    labels = struct.pack(">II", 0x0801, 5) + bytes([0, 1, 2, 3, 4])
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    data._mnist_arrays.cache_clear()
    yield folder
    data._mnist_arrays.cache_clear()


def test_cli_train_on_a_truncated_mnist_names_the_file_in_one_line(mnist_folder, tmp_course_dirs, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_HOME", str(tmp_course_dirs))
    damaged = mnist_folder / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:40])
    code, lines = run_cli(["train", "mnist-ddpm", "--fast", "--no-progress"], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert str(damaged) in lines[0] and "delete it" in lines[0] and "COURSE_DATA_DIR" in lines[0]


# ---------------------------------------------------------------------------------------------
# The API: BadRequest (or BadFile) naming the argument (or file), before any compute


class Case(NamedTuple):
    id: str
    call: Callable
    error: type
    says: str  # what the message must name


def _cases() -> list[Case]:
    R, F = BadRequest, BadFile
    gen, pgen = pretrained.generate, photos.generate
    grid = torch.tensor([1.0, 0.5, 0.0])
    images = torch.zeros(2, 1, 28, 28)
    cases = [
        # pretrained.generate
        ("pretrained n=0", lambda k: gen(k.mnist, k.cfg, 0), R, "n must"),
        ("pretrained n=-1", lambda k: gen(k.mnist, k.cfg, -1), R, "n must"),
        ("pretrained n=2.5", lambda k: gen(k.mnist, k.cfg, 2.5), R, "n must"),
        ("pretrained n=True", lambda k: gen(k.mnist, k.cfg, True), R, "n must"),
        ("pretrained steps=0", lambda k: gen(k.mnist, k.cfg, 2, steps=0), R, "steps"),
        ("pretrained ddpm steps>T", lambda k: gen(k.mnist, k.ddpm, 2, steps=1001), R, "steps must be at most 1000"),
        ("pretrained guidance nan", lambda k: gen(k.mnist, k.cfg, 2, guidance_scale=NAN), R, "guidance_scale"),
        ("pretrained guidance inf", lambda k: gen(k.mnist, k.fm, 2, guidance_scale=INF), R, "guidance_scale"),
        ("pretrained labels 10", lambda k: gen(k.mnist, k.cfg, 2, labels=torch.tensor([1, 10])), R, "labels"),
        ("pretrained labels -1", lambda k: gen(k.mnist, k.cfg, 2, labels=torch.tensor([-1, 1])), R, "labels"),
        ("pretrained labels length", lambda k: gen(k.mnist, k.cfg, 2, labels=torch.tensor([1, 2, 3])), R, "labels"),
        ("pretrained labels float", lambda k: gen(k.mnist, k.cfg, 2, labels=torch.tensor([1.5, 2.0])), R, "labels"),
        ("pretrained labels uncond", lambda k: gen(k.mnist, k.fm, 2, labels=torch.tensor([1, 2])), R, "labels"),
        ("pretrained seed -1", lambda k: gen(k.mnist, k.cfg, 2, seed=-1), R, "seed"),
        ("pretrained seed 2**32", lambda k: gen(k.mnist, k.cfg, 2, seed=2**32), R, "seed"),
        (
            "pretrained generator streams",
            lambda k: gen(k.mnist, k.cfg, 3, generator=PerSample([1, 2])),
            R,
            "generator",
        ),
        # photos
        ("photos n=-1", lambda k: pgen(k.photo, k.f0, n=-1), R, "n must"),
        ("photos n=0", lambda k: pgen(k.photo, k.f0, n=0), R, "n must"),
        ("photos steps=0", lambda k: pgen(k.photo, k.f0, steps=0), R, "steps"),
        ("photos steps>T", lambda k: pgen(k.photo, k.f0, steps=1001), R, "steps"),
        ("photos guidance nan", lambda k: pgen(k.photo, k.f0, guidance_scale=NAN), R, "guidance_scale"),
        ("photos guidance str", lambda k: pgen(k.photo, k.f0, guidance_scale="2"), R, "guidance_scale"),
        ("photos eta nan", lambda k: pgen(k.photo, k.f0, eta=NAN), R, "eta"),
        ("photos eta -1", lambda k: pgen(k.photo, k.f0, eta=-1.0), R, "eta"),
        ("photos seed -1", lambda k: pgen(k.photo, k.f0, seed=-1), R, "seed"),
        ("photos seed 1.5", lambda k: pgen(k.photo, k.f0, seed=1.5), R, "seed"),
        ("photos features nan", lambda k: pgen(k.photo, torch.full((32,), NAN)), R, "finite"),
        ("photos features length", lambda k: pgen(k.photo, torch.zeros(31)), R, "32"),
        (
            "photos like only typo",
            lambda k: photos.generate_like(k.photo, k.tmp / "ok.png", only="LIGHTNING"),
            R,
            "LIGHTNING",
        ),
        (
            "photos like only list typo",
            lambda k: photos.generate_like(k.photo, k.tmp / "ok.png", only=["roughness", "shiny"]),
            R,
            "shiny",
        ),
        ("photos like only empty", lambda k: photos.generate_like(k.photo, k.tmp / "ok.png", only=[]), R, "only"),
        ("photos like n=0", lambda k: photos.generate_like(k.photo, k.tmp / "ok.png", n=0), R, "n must"),
        ("photos like steps", lambda k: photos.generate_like(k.photo, k.tmp / "ok.png", steps=-5), R, "steps"),
        ("photos like missing image", lambda k: photos.generate_like(k.photo, k.tmp / "nope.png"), F, "nope.png"),
        ("photos like bomb image", lambda k: photos.generate_like(k.photo, k.tmp / "bomb.png"), F, "bomb.png"),
        ("photos sweep nan", lambda k: photos.feature_sweep(k.photo, k.f0, "roughness", [0.1, NAN]), R, "values"),
        ("photos sweep 1.5", lambda k: photos.feature_sweep(k.photo, k.f0, "roughness", [1.5]), R, "values"),
        ("photos sweep empty", lambda k: photos.feature_sweep(k.photo, k.f0, "roughness", []), R, "values"),
        ("photos sweep name", lambda k: photos.feature_sweep(k.photo, k.f0, "rough", [0.1]), R, "roughness"),
        ("photos sweep eta", lambda k: photos.feature_sweep(k.photo, k.f0, "roughness", eta=INF), R, "eta"),
        ("photos sweep seed", lambda k: photos.feature_sweep(k.photo, k.f0, "roughness", seed=-3), R, "seed"),
        (
            "photos fidelity batch 0",
            lambda k: photos.measure_fidelity(k.photo, k.f0.expand(2, -1), batch=0),
            R,
            "batch",
        ),
        (
            "photos fidelity guidance",
            lambda k: photos.measure_fidelity(k.photo, k.f0.expand(2, -1), guidance_scale=NAN),
            R,
            "guidance_scale",
        ),
        ("check_features n=0", lambda k: photo_data.check_features(k.f0, 0), R, "n must"),
        ("check_features n=-1", lambda k: photo_data.check_features(k.f0, -1), R, "n must"),
        ("load_photos size 4", lambda k: photo_data.load_photos(k.tmp, size=4), R, "size"),
        ("load_photos limit -1", lambda k: photo_data.load_photos(k.tmp, size=8, limit=-1), R, "limit"),
        ("load_photos workers 0", lambda k: photo_data.load_photos(k.tmp, size=8, workers=0), R, "workers"),
        ("load_photos no folder", lambda k: photo_data.load_photos(k.tmp / "nope", size=8), F, "nope"),
        # samplers
        ("euler grid nan", lambda k: samplers.euler(untouchable_fn, k.x, torch.tensor([1.0, NAN, 0.0])), R, "ts"),
        ("euler grid t>1", lambda k: samplers.euler(untouchable_fn, k.x, torch.tensor([2.0, 0.5, 0.0])), R, "ts"),
        ("heun grid t<0", lambda k: samplers.heun(untouchable_fn, k.x, torch.tensor([1.0, 0.5, -0.5])), R, "ts"),
        ("heun grid increasing", lambda k: samplers.heun(untouchable_fn, k.x, torch.tensor([0.0, 1.0])), R, "ts"),
        (
            "ddpm grid nan",
            lambda k: samplers.ddpm(untouchable_fn, k.x, torch.tensor([NAN, 0.0]), schedule=k.schedule),
            R,
            "ts",
        ),
        (
            "ddim eta nan",
            lambda k: samplers.ddim(untouchable_fn, k.x, grid, schedule=k.schedule, eta=NAN),
            R,
            "eta",
        ),
        (
            "ddim x_init nan",
            lambda k: samplers.ddim(untouchable_fn, torch.full((1, 1, 4, 4), NAN), grid, schedule=k.schedule),
            R,
            "x_init",
        ),
        # guidance
        ("cfg scale nan", lambda k: guidance.cfg(untouchable_fn, NAN), R, "scale"),
        ("cfg scale inf", lambda k: guidance.cfg(untouchable_fn, INF), R, "scale"),
        ("cfg scale tensor nan", lambda k: guidance.cfg(untouchable_fn, torch.tensor([1.0, NAN])), R, "scale"),
        ("negative scale nan", lambda k: guidance.negative_guidance(untouchable_fn, NAN, 3), R, "scale"),
        (
            "negative negative_scale inf",
            lambda k: guidance.negative_guidance(untouchable_fn, 1.0, 3, -INF),
            R,
            "negative_scale",
        ),
        ("negative class None", lambda k: guidance.negative_guidance(untouchable_fn, 1.0, None), R, "negative"),
        # editing
        (
            "sdedit grid nan",
            lambda k: editing.sdedit(untouchable_fn, k.x, torch.tensor([1.0, NAN, 0.0]), 0, schedule=k.schedule),
            R,
            "ts",
        ),
        ("sdedit i_start", lambda k: editing.sdedit(untouchable_fn, k.x, grid, 7, schedule=k.schedule), R, "i_start"),
        (
            "sdedit x0 nan",
            lambda k: editing.sdedit(untouchable_fn, torch.full((1, 1, 4, 4), NAN), grid, 0, schedule=k.schedule),
            R,
            "x0",
        ),
        (
            "inpaint mask > 1",
            lambda k: editing.inpaint(untouchable_fn, k.x, torch.full((8, 8), 2.0), grid, schedule=k.schedule),
            R,
            "mask",
        ),
        (
            "inpaint resample 0",
            lambda k: editing.inpaint(untouchable_fn, k.x, torch.ones(8, 8), grid, schedule=k.schedule, resample=0),
            R,
            "resample",
        ),
        ("hybrid sigma nan", lambda k: editing.hybrid(untouchable_fn, 1, 2, sigma=NAN), R, "sigma"),
        ("hybrid ksize even", lambda k: editing.hybrid(untouchable_fn, 1, 2, sigma=1.0, ksize=4), R, "ksize"),
        ("hybrid ksize -1", lambda k: editing.hybrid(untouchable_fn, 1, 2, sigma=1.0, ksize=-1), R, "ksize"),
        ("anagram cond str", lambda k: editing.anagram(untouchable_fn, "6", 9), R, "cond_a"),
        # features
        ("to_rgb nan", lambda k: features.to_rgb(np.full((8, 8, 3), NAN)), R, "NaN"),
        ("to_rgb value_range inf", lambda k: features.to_rgb(np.zeros((8, 8, 3)), (0.0, INF)), R, "value_range"),
        ("extract_features too small", lambda k: features.extract_features(np.zeros((2, 2, 3))), R, "pixels"),
        ("extract_batch 3-D", lambda k: features.extract_batch(torch.zeros(3, 8, 8)), R, "(B, C, H, W)"),
        ("extract_folder workers 0", lambda k: features.extract_folder(k.tmp, workers=0), R, "workers"),
        ("extract_folder limit -1", lambda k: features.extract_folder(k.tmp, limit=-1), R, "limit"),
        ("extract_folder no folder", lambda k: features.extract_folder(k.tmp / "nope"), F, "nope"),
        # data
        ("load_mnist split", lambda k: data.load_mnist("val"), R, "split"),
        ("load_mnist scale", lambda k: data.load_mnist("test", scale="bits"), R, "scale"),
        ("load_mnist limit 0", lambda k: data.load_mnist("test", limit=0), R, "limit"),
        ("load_mnist limit -1", lambda k: data.load_mnist("test", limit=-1), R, "limit"),
        ("list_images no folder", lambda k: data.list_images(k.tmp / "nope"), F, "nope"),
        # metrics
        ("psnr data_range 0", lambda k: metrics.psnr(images, images, data_range=0), R, "data_range"),
        ("psnr data_range nan", lambda k: metrics.psnr(images, images, data_range=NAN), R, "data_range"),
        ("psnr nan image", lambda k: metrics.psnr(torch.full((1, 4, 4), NAN), torch.zeros(1, 4, 4)), R, "a holds"),
        ("ssim shapes", lambda k: metrics.ssim(torch.zeros(1, 8, 8), torch.zeros(1, 8, 9)), R, "shape"),
        ("classify nan", lambda k: metrics.classify(torch.full((2, 1, 28, 28), NAN)), R, "NaN"),
        ("classify shape", lambda k: metrics.classify(torch.zeros(2, 3, 28, 28)), R, "28"),
        ("classify scale", lambda k: metrics.probabilities(images, scale="bytes"), R, "scale"),
        ("accuracy labels 10", lambda k: metrics.conditional_accuracy(images, [1, 10]), R, "labels"),
        ("accuracy labels length", lambda k: metrics.conditional_accuracy(images, [1]), R, "labels"),
        ("confident threshold nan", lambda k: metrics.confident_fraction(images, NAN), R, "threshold"),
        ("digit_quality one image", lambda k: metrics.digit_quality(images[:1]), R, "at least 2"),
        ("digit_quality labels", lambda k: metrics.digit_quality(images, [0, 11]), R, "labels"),
        ("mnist_fd one image", lambda k: metrics.mnist_fd(images[:1]), R, "at least 2"),
        ("frechet spaces", lambda k: metrics.frechet_distance(np.zeros((3, 2)), np.zeros((3, 4))), R, "spaces"),
        ("gaussian_fit nan", lambda k: metrics.gaussian_fit(np.full((3, 2), NAN)), R, "NaN"),
    ]
    return [Case(*c) for c in cases]


API_CASES = _cases()


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api_refuses_clearly_before_any_compute(case, kit):
    with pytest.raises(CourseError) as err:
        case.call(kit)
    assert isinstance(err.value, case.error), f"{type(err.value).__name__}: {err.value}"
    if case.error is BadRequest:
        assert isinstance(err.value, ValueError)  # `except ValueError` keeps working
    assert case.says in str(err.value), str(err.value)
    assert "\n" not in str(err.value)  # one line, as the command line prints it


# ---------------------------------------------------------------------------------------------
# Damaged files: BadFile naming the file (and, for data sets, the fix)


FILE_CASES = ["missing.png", "truncated.png", "text.png", "huge.png", "bomb.png"]


@pytest.mark.parametrize("name", FILE_CASES)
def test_load_image_names_the_bad_file(name, kit, monkeypatch):
    from PIL import ImageFile

    decoded = []
    if name in ("huge.png", "bomb.png"):  # these must be refused from their header, never decoded
        monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    with pytest.raises(data.UnreadableFile) as err:
        data.load_image(kit.tmp / name)
    assert isinstance(err.value, BadFile) and isinstance(err.value, ValueError)
    assert str(kit.tmp / name) in str(err.value)
    if name in ("huge.png", "bomb.png"):
        assert "not decoded" in str(err.value) and not decoded  # refused from the header alone


def test_the_pixel_cap_is_a_setting(kit, monkeypatch):
    monkeypatch.setattr(data, "MAX_PIXELS", 32 * 32 - 1)
    with pytest.raises(data.UnreadableFile, match="32x32"):
        data.load_image(kit.tmp / "ok.png")
    assert data.load_image(kit.tmp / "ok.png", max_pixels=32 * 32).shape == (32, 32, 3)


def _damage(kind: str, folder: Path) -> Path:
    images = folder / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if kind == "truncated gz":
        images.write_bytes(images.read_bytes()[:40])
    elif kind == "corrupt gz":
        images.write_bytes(b"\x1f\x8b" + bytes(range(200)))
    elif kind == "empty gz":
        images.write_bytes(b"")
    elif kind in ("truncated idx", "not idx"):
        images.unlink()
        images = folder / "train-images-idx3-ubyte"
        images.write_bytes(raw[:1000] if kind == "truncated idx" else b"PK\x03\x04 a zip, not IDX" + raw)
    elif kind == "counts disagree":
        images.write_bytes(gzip.compress(struct.pack(">I3I", 0x0803, 4, 28, 28) + bytes(4 * 28 * 28)))
        return folder / "train-labels-idx1-ubyte.gz"
    elif kind == "header cut":
        images.write_bytes(gzip.compress(raw[:9]))
    return images


MNIST_DAMAGE = ["truncated gz", "corrupt gz", "empty gz", "truncated idx", "not idx", "counts disagree", "header cut"]


@pytest.mark.parametrize("kind", MNIST_DAMAGE)
def test_damaged_mnist_names_the_file_and_the_fix(kind, mnist_folder):
    assert data.load_mnist("train")[0].shape == (5, 1, 28, 28)  # the intact set reads
    data._mnist_arrays.cache_clear()
    damaged = _damage(kind, mnist_folder)
    with pytest.raises(BadFile) as err:
        data.load_mnist("train")
    message = str(err.value)
    assert str(damaged) in message and "delete it" in message and "COURSE_DATA_DIR" in message, message
    assert isinstance(err.value, ValueError) and "\n" not in message
    assert data.verify("mnist")["train-images-idx3-ubyte"] is False  # reported, not raised


# ---------------------------------------------------------------------------------------------
# Folders: bad files are skipped and listed, the rest measured


@pytest.fixture
def mixed_folder(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(2):
        save_png(folder / f"good{i}.png", good_image(i + 1))
    (folder / "bomb.png").write_bytes(png_claiming(20000, 20000))
    (folder / "huge.png").write_bytes(png_claiming(10000, 6000))
    (folder / "truncated.png").write_bytes((folder / "good0.png").read_bytes()[:70])
    return folder


def test_extract_folder_skips_and_lists_the_bad_files(mixed_folder):
    paths, feats, failures = features.extract_folder(mixed_folder, workers=1, cache=False, progress=False)
    assert [p.name for p in paths] == ["good0.png", "good1.png"] and feats.shape == (2, 32)
    assert sorted(p.name for p, _ in failures) == ["bomb.png", "huge.png", "truncated.png"]
    assert all(str(p) in why for p, why in failures), failures


def test_a_feature_failure_on_one_file_is_reported_not_raised(mixed_folder, monkeypatch):
    def explode(image, **kw):
        raise IndexError("a formula broke on this image")

    monkeypatch.setattr(features, "extract_features", explode)
    why = features.features_of_file(mixed_folder / "good0.png")
    assert isinstance(why, str) and "IndexError" in why and "good0.png" in why


def test_load_photos_skips_and_lists_the_bad_files(mixed_folder, tmp_course_dirs):
    ps = photo_data.load_photos(mixed_folder, size=8, workers=1, progress=False)
    assert [p.name for p in ps.paths] == ["good0.png", "good1.png"] and ps.images.shape == (2, 3, 8, 8)
    assert sorted(p.name for p, _ in ps.failures) == ["bomb.png", "huge.png", "truncated.png"]


# ---------------------------------------------------------------------------------------------
# Bit depth: a 16-bit PNG reads as its 8-bit version does, through the loader and the extractor


@pytest.mark.parametrize("kind", ["colour", "dark gray"])
def test_sixteen_bit_png_reads_like_its_eight_bit_version(kind, tmp_path):
    rng = np.random.default_rng(3)
    if kind == "colour":
        v16 = (rng.random((20, 24, 3)) * 65535).astype(np.uint16)
    else:  # every value below 256: read as 8-bit numbers, this image would be 257 times too bright
        v16 = np.repeat((rng.random((20, 24, 1)) * 200).astype(np.uint16), 3, axis=2)
    v8 = np.round(v16 / 257).astype(np.uint8)
    p16, p8 = save_png(tmp_path / "16.png", v16), save_png(tmp_path / "8.png", v8)
    if kind == "dark gray":
        cv2.imwrite(str(p16), v16[..., 0])
        cv2.imwrite(str(p8), v8[..., 0])
        assert Image.open(p16).mode.startswith("I;16")
    tol = 1 / 255 + 1e-6
    np.testing.assert_allclose(data.load_image(p16), data.load_image(p8), atol=tol)
    np.testing.assert_allclose(data.load_image(p16), v16 / 65535, atol=1e-6)
    np.testing.assert_allclose(features.to_rgb(v16), features.to_rgb(v8), atol=tol)
    np.testing.assert_allclose(features.prepare(v16), features.prepare(data.load_image(p16)), atol=1e-5)


def test_a_sixteen_bit_file_and_its_array_give_the_same_features(tmp_path):
    """The folder reader (load_image) and the extractor (uint16 arrays) agree on the bit depth."""
    v16 = (good_image(5, size=40).astype(np.uint16) * 257 + np.arange(40)[:, None, None]).astype(np.uint16)
    p16 = save_png(tmp_path / "16.png", v16)
    np.testing.assert_allclose(features.features_of_file(p16), features.extract_features(v16), atol=1e-5)
    v8 = np.round(v16 / 257).astype(np.uint8)
    p8 = save_png(tmp_path / "8.png", v8)
    np.testing.assert_allclose(features.features_of_file(p8), features.extract_features(v8), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Worker pools and scripts without a main guard


def test_the_main_guard_is_found(tmp_path, monkeypatch):
    guarded, bare = tmp_path / "guarded.py", tmp_path / "bare.py"
    guarded.write_text('import os\n\nif "__main__" == __name__:\n    print(1)\n')
    bare.write_text("import os\nprint(1)\n")
    for path, method, expected in (
        (bare, "forkserver", str(bare)),
        (bare, "spawn", str(bare)),
        (bare, "fork", None),
        (guarded, "forkserver", None),
    ):
        main_module = types.ModuleType("__main__")
        main_module.__file__, main_module.__spec__ = str(path), None
        monkeypatch.setitem(sys.modules, "__main__", main_module)
        assert features._main_reruns_in_workers(method) == expected
    notebook = types.ModuleType("__main__")  # an interactive session: no file to run again
    monkeypatch.setitem(sys.modules, "__main__", notebook)
    assert features._main_reruns_in_workers("spawn") is None


def test_an_unguarded_script_with_workers_runs_once_and_measures_everything(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        save_png(folder / f"p{i}.png", good_image(i, size=24))
    marker = tmp_path / "ran.txt"
    script = tmp_path / "measure.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            with open({str(marker)!r}, "a") as f:
                f.write("ran\\n")
            from course_utils import features
            table = features.extract_folder({str(folder)!r}, workers=2, cache=False, progress=False)
            print("measured", len(table.paths), "failed", len(table.failures))
            """
        )
    )
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "measured 6 failed 0" in run.stdout
    assert marker.read_text().count("ran") == 1  # the top level ran once: no worker re-ran it
    warning = [line for line in run.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(warning) == 1 and "guard" in warning[0], run.stderr


def test_inventory_counts():
    """The numbers in the module docstring are those of this module."""
    cli = len(CLI_CASES) + 1  # + the truncated MNIST under `train`
    files = len(FILE_CASES) + 1 + len(MNIST_DAMAGE)  # + the pixel cap as a setting
    other = 3 + 3 + 2  # folders (with a failing formula), bit depth, worker pools
    tried = cli + len(API_CASES) + files + other
    said = (
        f"Tried: {tried} cases ({cli} on the command line, {len(API_CASES)} API calls, {files} damaged files, "
        f"{other} folder, bit-depth and worker-pool checks); all {tried} fail clearly"
    )
    assert said in " ".join(__doc__.split()), said
