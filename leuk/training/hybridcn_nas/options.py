"""The options of a HybridCN-NAS training run: presets, per-preset defaults, validation (no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

from leuk.defaults import SEED, TEST_SIZE, VAL_SIZE
from leuk.errors import LeukError

__all__ = ["OPTIMIZERS", "OPTIMIZER_CLASSES", "PRESETS", "PRESET_ALIASES", "PRESET_DEFAULTS", "STAGES_DIR", "HybridTrainOptions",
           "preset_name"]

STAGES_DIR = "stages"
#: the classifier's optimisers: name -> (``torch.optim`` class, arguments besides lr and weight decay)
OPTIMIZER_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {}),
    "sgd": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "rmsprop": ("RMSprop", {}),
    "adamax": ("Adamax", {}),
}
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)
#: per-preset defaults of the options left as ``None``, keyed by the model preset names of ``leuk.models``
#: (the family's presets: a test checks that the two agree)
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "hybridcn-nas-lite": {"segmenter_epochs": 15, "extractor_epochs": 20, "extractor_lr": 2e-3,
                          "classifier_epochs": 150, "classifier_lr": 1e-3},
    "hybridcn-nas": {"segmenter_epochs": 40, "extractor_epochs": 10, "extractor_lr": 1e-4, "classifier_epochs": 100,
                     "classifier_lr": 1e-4},
}
#: the presets this engine trains, the default first
PRESETS = tuple(PRESET_DEFAULTS)
#: the short names of earlier runs (``--preset lite|paper``, their stage caches and saved run records),
#: still accepted and read as the preset they stood for
PRESET_ALIASES = {"lite": "hybridcn-nas-lite", "paper": "hybridcn-nas"}


def preset_name(name: str) -> str:
    """The model preset ``name`` stands for (a preset name or a short name of :data:`PRESET_ALIASES`);
    raises ``LeukError`` for anything else."""
    name = PRESET_ALIASES.get(name, name)
    if name not in PRESET_DEFAULTS:
        raise LeukError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return name


@dataclass
class HybridTrainOptions:
    """Every knob of a HybridCN-NAS training run (``None`` = the preset's default, see PRESET_DEFAULTS)."""

    preset: str = PRESETS[0]
    config_overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = SEED
    protocol: str = "patient"
    test_size: float = TEST_SIZE
    val_size: float = VAL_SIZE
    patients_csv: Optional[str] = None
    #: ImageNet weights for the branches: ``False``, ``True`` (= ``"auto"``), ``"package"``, ``"hub"`` or a file
    #: (:func:`leuk.models.pretrained.load_backbone_weights`)
    pretrained: bool | str = False
    #: the branches that get them (``("b",)``: branch B only, branch A from random weights)
    pretrained_branches: tuple[str, ...] = ("a", "b")
    #: learning rate of the pretrained branches relative to ``extractor_lr`` (layer-wise fine-tuning)
    backbone_lr_scale: float = 1.0
    #: keep the pretrained branches frozen (ImageNet features; the layers above them train)
    freeze_pretrained: bool = False
    freeze_backbones: bool = False
    steps: tuple[str, ...] = ("stain", "multiscale", "edge", "clahe", "denoise")
    stain_color_space: str = "lab"
    stain_template: Optional[str] = None
    batch_size: int = 16
    segmenter_epochs: Optional[int] = None
    segmenter_lr: float = 3e-3
    extractor_epochs: Optional[int] = None
    extractor_lr: Optional[float] = None
    #: weight of each branch's own classification loss (a linear head on its pooled attention map) beside the
    #: fused features' loss while the extractor trains; 0 trains through the fused features only
    branch_loss_weight: float = 0.0
    classifier_epochs: Optional[int] = None
    classifier_lr: Optional[float] = None
    classifier_batch_size: int = 64
    optimizer: str = "adamw"
    weight_decay: float = 1e-2
    patience: int = 30
    num_selected: Optional[int] = None
    save_dtype: str = "float32"
    synthetic: Optional[bool] = None
    device: str = "cpu"
    progress: bool = True

    def resolved(self) -> "HybridTrainOptions":
        """A copy with the preset's defaults filled in and a short preset name replaced by the preset it
        stands for; raises ``LeukError`` for invalid values."""
        preset = preset_name(self.preset)
        if self.optimizer not in OPTIMIZERS:
            raise LeukError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        from leuk.preprocess import PREPROCESSING_STEPS

        unknown = sorted(set(self.steps) - set(PREPROCESSING_STEPS))
        if unknown:
            raise LeukError(f"unknown preprocessing step(s) {', '.join(unknown)} "
                            f"(steps: {', '.join(PREPROCESSING_STEPS)})")
        if not self.pretrained_branches or set(self.pretrained_branches) - {"a", "b"}:
            raise LeukError(f"pretrained_branches must name branch a, b or both, got {self.pretrained_branches!r}")
        if not self.backbone_lr_scale > 0:
            raise LeukError(f"backbone_lr_scale must be positive, got {self.backbone_lr_scale}")
        if self.save_dtype not in ("float32", "float16", "bfloat16"):
            raise LeukError(f"save_dtype must be float32, float16 or bfloat16, got {self.save_dtype!r}")
        filled = {key: value for key, value in PRESET_DEFAULTS[preset].items() if getattr(self, key) is None}
        return replace(self, preset=preset, steps=tuple(s for s in PREPROCESSING_STEPS if s in self.steps), **filled)

    def fingerprint(self) -> dict[str, Any]:
        """The options that determine the stage results (not device, progress or output dtype)."""
        record = asdict(self)
        for key in ("device", "progress", "save_dtype", "synthetic"):
            record.pop(key)
        record["steps"] = list(self.steps)
        record["pretrained_branches"] = list(self.pretrained_branches)
        return record


#: options added after runs were cached, with the value that reproduces those runs
FINGERPRINT_ADDITIONS: dict[str, Any] = {"branch_loss_weight": 0.0, "pretrained_branches": ["a", "b"],
                                         "backbone_lr_scale": 1.0, "freeze_pretrained": False}


def upgraded_fingerprint(record: dict[str, Any]) -> dict[str, Any]:
    """A stored fingerprint brought to the current format, so that older stage caches stay valid: a short
    preset name (runs before the preset names) becomes the preset it stands for, and options added since
    (:data:`FINGERPRINT_ADDITIONS`) get the value those runs used."""
    preset = record.get("preset")
    record = {**record, "preset": PRESET_ALIASES[preset]} if preset in PRESET_ALIASES else record
    return {**FINGERPRINT_ADDITIONS, **record} if record else record
