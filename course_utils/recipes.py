"""One recipe type for everything the course trains: how a model is built, trained and sampled.

A :class:`Recipe` is a frozen dataclass stored (as a dict) in every checkpoint's JSON record, so a
file says how it was made and a student can make it again with one command. The same type
describes the MNIST generators (:mod:`course_utils.pretrained`), the MNIST classifier
(:mod:`course_utils.classifier`) and the photo models (:mod:`course_utils.photos`); what only one
kind of model needs (the photo model's feature statistics, the classifier's shift augmentation)
sits in ``extra``.

``objective`` names the loss and ``prediction`` what the network outputs
(:mod:`course_utils.predictions`): ``"ddpm"`` trains an ``"eps"`` model on a DDPM schedule,
``"flow"`` a ``"velocity"`` model on the flow path, ``"classify"`` a classifier (logits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from . import schedules
from .errors import BadRequest
from .unet import UNetConfig

OBJECTIVES = {"ddpm": "eps", "flow": "velocity", "classify": None, "autoencode": None}


@dataclass(frozen=True)
class Recipe:
    """How a named model is trained and sampled (stored in its checkpoint's record)."""

    name: str
    about: str = ""
    objective: str = "ddpm"  # "ddpm" (eps, DDPM schedule), "flow" (velocity, flow path) or "classify"
    unet: UNetConfig | None = None  # None for models that are not UNets (the classifier)
    schedule: str = "linear"  # DDPM schedules only: "linear" or "cosine"
    T: int = 1000
    p_uncond: float = 0.0  # condition dropout for classifier-free guidance
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-3
    lr_schedule: str = "exponential"  # "constant", "exponential" (per epoch) or "cosine" (per step)
    lr_final_factor: float = 0.1  # exponential decay: lr falls by this factor over the run
    optimizer: str = "adam"
    weight_decay: float = 0.0
    ema_decay: float | None = 0.999
    seed: int = 0
    data_limit: int | None = None  # None: the whole training set
    fast: dict = field(default_factory=dict)  # what fast mode changes: epochs, data_limit, hidden
    sample_steps: int = 20
    sha256: str | None = None  # of the shipped NAME.safetensors
    trained: str = ""  # how the shipped checkpoint was made (time, machine)
    extra: dict = field(default_factory=dict)  # what one kind of model alone needs

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise BadRequest(f"objective must be one of {sorted(OBJECTIVES)}, not {self.objective!r}")

    @property
    def prediction(self) -> str | None:
        """What the network predicts: "eps", "velocity", or None (a classifier)."""
        return OBJECTIVES[self.objective]

    @property
    def gamma(self) -> float:
        """Per-epoch factor of the exponential learning-rate decay (ExponentialLR's gamma)."""
        return self.lr_final_factor ** (1.0 / max(1, self.epochs))

    def train_kwargs(self) -> dict:
        """The arguments of :func:`course_utils.training.train` this recipe sets (the caller adds the
        data, the run folder, callbacks and ``recipe=self.to_dict()``)."""
        return dict(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            lr_schedule=self.lr_schedule,
            gamma=self.gamma if self.lr_schedule == "exponential" else None,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            ema_decay=self.ema_decay,
            seed=self.seed,
        )

    def noise_schedule(self) -> schedules.Schedule:
        """The path the model was trained on."""
        if self.objective == "flow":
            return schedules.FlowSchedule()
        make = {"linear": schedules.linear_schedule, "cosine": schedules.cosine_schedule}.get(self.schedule)
        if make is None:
            raise BadRequest(f"schedule must be 'linear' or 'cosine', not {self.schedule!r}")
        return make(self.T)

    def for_fast_mode(self) -> "Recipe":
        """The same recipe with the fast-mode sizes."""
        changes = dict(self.fast)
        hidden = changes.pop("hidden", None)
        unet = self.unet.replace(hidden=hidden) if hidden and self.unet is not None else self.unet
        return replace(self, unet=unet, sha256=None, trained="", **changes)

    def replace(self, **changes) -> "Recipe":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["unet"] = self.unet.to_dict() if self.unet is not None else None
        values["prediction"] = self.prediction
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "Recipe":
        """Rebuild a recipe from a record (unknown keys, such as ``prediction``, are left out)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if values.get("unet") is not None:
            values["unet"] = UNetConfig.from_dict(values["unet"])
        return cls(**values)
