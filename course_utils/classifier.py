"""The course's MNIST classifier: the judge of generated digits (:mod:`course_utils.metrics` scores with it).

A small CNN (:class:`MnistClassifier`, 140k parameters, 99.36% test accuracy) that reads 28x28
digits in [-1, 1], the scale the diffusion models produce. It is one more course model:

- its recipe is a :class:`~course_utils.recipes.Recipe` (:data:`RECIPE`, objective
  ``"classify"``; the shift augmentation sits in ``extra``);
- it trains through the course's one loop, :func:`course_utils.training.train`, with
  :func:`classification_loss` (random shifts of up to ``max_shift`` pixels, then cross-entropy);
- its weights ship in the course's one checkpoint format (:mod:`course_utils.checkpoints`):
  ``mnist-classifier.safetensors`` (``model.*`` tensors, float16) beside ``mnist-classifier.json``
  (the recipe, the training report and the file's SHA-256), shipped in ``data/checkpoints/`` and
  looked for like every checkpoint (:func:`course_utils.config.find_checkpoint`).

:func:`load_classifier` checks the shipped file against ``RECIPE.sha256`` (a file trained on
your machine against its own record, the rule of :func:`course_utils.pretrained.load`) and
raises :class:`~course_utils.errors.CheckpointError` on a mismatch; without the file it trains the
classifier (a few minutes on a CPU) and caches it. Loaded models are kept in memory.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoints, config, data, predictions, training
from .errors import CheckpointError
from .files import sha256_file
from .recipes import Recipe

__all__ = [
    "MnistClassifier",
    "random_shift",
    "classification_loss",
    "evaluate",
    "RECIPE",
    "CLASSIFIER_FILE",
    "CLASSIFIER_SHA256",
    "train_classifier",
    "save_classifier",
    "load_classifier",
    "checkpoint_path",
    "CheckpointError",
]

CLASSIFIER_FILE = "mnist-classifier.safetensors"

RECIPE = Recipe(
    name="mnist-classifier",
    about="the course's MNIST classifier: a 140k-parameter CNN on digits in [-1, 1], shifts of up to 2 px",
    objective="classify",
    unet=None,
    epochs=3,
    batch_size=128,
    lr=2e-3,
    lr_schedule="cosine",
    optimizer="adamw",
    weight_decay=1e-4,
    ema_decay=None,
    seed=0,
    extra=dict(max_shift=2),
    # SHA-256 of the shipped checkpoint; a file that does not match is refused.
    sha256="fa1e60fc6f391c79a1a589b4bdbcade008d741e474bfac74d27878a619c18eaa",
    trained=(
        "3 epochs (1,407 steps) over the 60,000 training digits, 368 s wall-clock on 1 thread of a 2-core "
        "Intel Xeon, torch 2.13 CPU, with the course's earlier classifier loop (AdamW, per-step cosine decay, "
        "shifts of up to 2 px); 99.36% test accuracy"
    ),
)
CLASSIFIER_SHA256 = RECIPE.sha256


# ----------------------------------------------------------------------------------------------
# The network


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class MnistClassifier(nn.Module):
    """A small CNN for 28x28 digits in [-1, 1]; 140k parameters, 128 features.

    ::

        x (B, 1, 28, 28)
        conv-bn-relu x2, maxpool   (B, 32, 14, 14)
        conv-bn-relu x2, maxpool   (B, 64, 7, 7)
        conv-bn-relu, mean pool    (B, 128)          <- features (penultimate layer)
        dropout, linear            (B, 10)           <- logits
    """

    n_features = 128

    def __init__(self, dropout: float = 0.3):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_relu(1, 32),
            _conv_bn_relu(32, 32),
            nn.MaxPool2d(2),
            _conv_bn_relu(32, 64),
            _conv_bn_relu(64, 64),
            nn.MaxPool2d(2),
            _conv_bn_relu(64, self.n_features),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.n_features, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))  # (B, 128)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))  # (B, 10)


# ----------------------------------------------------------------------------------------------
# Training


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels each way (background -1 fills in).

    The shifts are drawn on the CPU from ``generator``, so they do not depend on ``x``'s device.
    """
    if max_shift <= 0:
        return x
    B, _, H, W = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, B), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + H, dx[i] : dx[i] + W] for i in range(B)])


def classification_loss(
    model: nn.Module, batch, *, max_shift: int = 2, generator: torch.Generator | None = None
) -> Tensor:
    """Cross-entropy of ``model`` on a batch ``(images, labels)`` shifted at random (from ``generator``).

    The ``loss_fn(model, batch, generator=g)`` that :func:`course_utils.training.train` calls.
    """
    images, labels = batch
    return F.cross_entropy(model(random_shift(images, max_shift, generator)), labels)


@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 128) -> float:
    """Accuracy of ``model`` on images in [-1, 1] with integer ``labels``."""
    model.eval()
    device = predictions.device_of(model)
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(images[i : i + batch_size].to(device))
        correct += (logits.argmax(1).cpu() == labels[i : i + batch_size]).sum().item()
    return correct / len(images)


@torch.enable_grad()  # also when called from a no-grad scoring function (a missing checkpoint)
def train_classifier(
    *,
    epochs: int = RECIPE.epochs,
    batch_size: int = RECIPE.batch_size,
    lr: float = RECIPE.lr,
    weight_decay: float = RECIPE.weight_decay,
    max_shift: int = RECIPE.extra["max_shift"],
    seed: int = RECIPE.seed,
    limit: int | None = None,
    test_limit: int | None = None,
    device: torch.device | str | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[MnistClassifier, dict]:
    """Train the classifier on MNIST's training set with :func:`course_utils.training.train`.

    :data:`RECIPE`'s settings (AdamW, cosine learning-rate decay per step, random shifts of up to
    ``max_shift`` pixels, cross-entropy); ``limit`` digits of the training set (None: all 60,000),
    ``test_limit`` of the test set to report on. With ``run_dir`` the loop writes a checkpoint each
    epoch and resumes from it. Returns ``(model, report)``, the model in eval mode; ``report``
    holds the test accuracy, the training time, the machine and the hyper-parameters.
    """
    device = torch.device(device) if device is not None else config.device()
    x_train, y_train = data.load_mnist("train", scale="signed", limit=limit)
    x_test, y_test = data.load_mnist("test", scale="signed", limit=test_limit)
    torch.manual_seed(seed)  # the initial weights
    model = MnistClassifier().to(device)
    recipe = RECIPE.replace(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        data_limit=limit,
        extra=dict(RECIPE.extra, max_shift=max_shift),
        sha256=None,
        trained="",
    )
    start = time.perf_counter()
    result = training.train(
        model,
        functools.partial(classification_loss, max_shift=max_shift),
        (x_train, y_train),
        **recipe.train_kwargs(),
        run_dir=run_dir,
        progress=progress,
        recipe=recipe.to_dict(),
    )
    seconds = time.perf_counter() - start
    model.eval()
    accuracy = evaluate(model, x_test, y_test)
    if progress:
        print(f"MNIST classifier: test accuracy {accuracy:.4f} on {len(x_test)} digits ({seconds:.0f} s)", flush=True)
    report = {
        "test_accuracy": accuracy,
        "test_images": len(x_test),
        "train_seconds": round(seconds, 1),
        "train_images": len(x_train),
        "steps": result.step,
        "epoch_losses": [round(v, 5) for v in result.epoch_losses],
        "machine": checkpoints.machine_description(device),
        "torch": torch.__version__,
        **dict(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, max_shift=max_shift, seed=seed),
    }
    return model, report


# ----------------------------------------------------------------------------------------------
# Saving and loading


def checkpoint_path() -> Path:
    """Where the classifier is: ``mnist-classifier.safetensors`` in the checkpoint folder, else the
    shipped one (:func:`course_utils.config.find_checkpoint`); if neither, where training writes it."""
    return config.find_checkpoint(CLASSIFIER_FILE)


def _recipe_for(report: dict | None) -> Recipe:
    """The recipe a report describes (its hyper-parameters over :data:`RECIPE`), without the shipped hash."""
    report = report or {}
    changes = {k: report[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "seed") if k in report}
    if "max_shift" in report:
        changes["extra"] = dict(RECIPE.extra, max_shift=report["max_shift"])
    return RECIPE.replace(sha256=None, trained="", **changes)


def save_classifier(
    model: nn.Module, path: str | Path, report: dict | None = None, *, recipe: Recipe | None = None
) -> str:
    """Save the weights (``model.*``, float16) and a JSON record in the course's checkpoint format.

    The record holds the recipe (``recipe``, else :data:`RECIPE` with the report's
    hyper-parameters) and ``report``; :func:`course_utils.checkpoints.export_weights` writes both
    atomically and puts the file's SHA-256 in the record, which is returned.
    """
    path = Path(path)
    recipe = recipe if recipe is not None else _recipe_for(report)
    record = dict(
        name=RECIPE.name,
        recipe=recipe.to_dict(),
        report=dict(report or {}),
        data="MNIST, 28x28 digits, pixels in [-1, 1]",
    )
    checkpoints.export_weights(model, path, record, half=True)
    return checkpoints.read_record(path)["sha256"]


def _expected_sha256(path: Path) -> str | None:
    """The registry's hash for the shipped file, None (check against the record) for a local one."""
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file() or checkpoints.read_record(path).get("sha256") == RECIPE.sha256:
        return RECIPE.sha256  # the shipped file: trust the recipe, not a file beside it
    return None


_LOADED: dict[tuple[str, str], MnistClassifier] = {}


def load_classifier(*, train_if_missing: bool = True, device: torch.device | str | None = None) -> MnistClassifier:
    """The course's MNIST classifier, in eval mode.

    Loads :func:`checkpoint_path` after checking its SHA-256 (against ``RECIPE.sha256`` for the
    shipped file, else against its own JSON record) and raises
    :class:`~course_utils.errors.CheckpointError` if it does not match; without the file, trains
    the classifier with :data:`RECIPE` and caches it in ``config.checkpoint_dir()`` (``FileNotFoundError`` if
    ``train_if_missing`` is False). Loaded models are kept in memory, so repeated calls are free.
    """
    path = checkpoint_path()
    if not path.is_file():
        if not train_if_missing:
            raise FileNotFoundError(
                f"no classifier checkpoint at {path}; restore it from the repository, or call "
                "load_classifier() to train it (a few minutes on a CPU)"
            )
        config.ensure_writable(path.parent, "COURSE_CHECKPOINT_DIR")
        print(f"{path} not found: training the MNIST classifier (a few minutes on a CPU)")
        model, report = train_classifier()
        save_classifier(model, path, report)
    key = (str(path.resolve()), sha256_file(path))
    if key not in _LOADED:
        model = MnistClassifier()
        # BatchNorm's integer step counters may be missing (the shipped file stores float weights
        # only): torch fills them in for a state dict without version metadata.
        checkpoints.load_weights(model, path, sha256=_expected_sha256(path))
        _LOADED[key] = model.eval()
    device = torch.device(device) if device is not None else config.device()
    return _LOADED[key].to(device)
