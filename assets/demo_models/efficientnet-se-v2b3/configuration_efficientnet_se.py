"""Configuration of EfficientNet-SE: a timm CNN backbone, a squeeze-and-excitation block on its final
feature map, global average pooling and an MLP head (Braga & Dantas, arXiv 2601.01026).

This file is Hub remote code: it imports only transformers (no ``leuk``).
"""

from dataclasses import field
from typing import Any

from transformers import PreTrainedConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_LABELS = {0: "hem", 1: "all"}
# The paper weights the minority class HEM with 0.75 and ALL with 0.25.
PAPER_FOCAL_ALPHA = {"hem": 0.75, "all": 0.25}
LOSSES = ("focal", "ce")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


def _default_focal_alpha() -> dict[str, float]:
    return dict(PAPER_FOCAL_ALPHA)


class EfficientNetSEConfig(PreTrainedConfig):
    r"""Hyperparameters of EfficientNet-SE, with the paper's values as defaults.

    Args:
        backbone: timm model name; built with ``pretrained=False`` (ImageNet weights are loaded by
            ``EfficientNetSEForImageClassification.load_pretrained_backbone``).
        num_channels: input channels.
        use_se: apply the squeeze-and-excitation block to the final feature map.
        se_reduction: SE bottleneck ratio (Linear C -> C/r -> C).
        use_head: the paper's MLP head; ``False`` gives a plain Linear classifier on the pooled features
            (baselines).
        head_hidden_sizes: widths of the head's hidden Linear -> BatchNorm -> ReLU blocks.
        head_dropout: dropout before each hidden block (one value per entry of ``head_hidden_sizes``).
        drop_rate: dropout on the backbone's final feature map, as timm applies it when a model is built
            without pooling (what the paper's code does).
        drop_path_rate: stochastic depth of the backbone.
        image_size: square input side in pixels.
        image_mean, image_std: normalisation of [0, 1] RGB inputs.
        interpolation: resize filter of the image processor.
        loss: ``"focal"`` or ``"ce"`` (plain cross-entropy; class balance then comes from sampling).
        focal_gamma: focusing parameter of the focal loss.
        focal_alpha: per-class weights of the focal loss, as ``{label: weight}`` or a list indexed by class
            id; ``None`` for no class weighting. The paper's ``{"hem": 0.75, "all": 0.25}`` by default; a model
            with other labels must pass its own weights or ``None``.
        temperature: logits are divided by it in ``forward`` (set by calibration on validation data).
        gradcam_min_side: Grad-CAM uses the backbone's final feature map unless that map has fewer cells a
            side (at 96 px an EfficientNet's is 3 x 3, each cell a third of the image); then it uses the
            deepest earlier map with at least this many (at 96 px the stride-16 stage, 6 x 6).
        pretrained_backbone_source: where the backbone's initial weights came from (for the model card).
        training_protocol: free-form description of how the weights were trained (for the model card).
    """

    model_type = "efficientnet_se"

    backbone: str = "tf_efficientnetv2_b3"
    num_channels: int = 3
    use_se: bool = True
    se_reduction: int = 16
    use_head: bool = True
    head_hidden_sizes: list[int] | tuple[int, ...] = (512, 256)
    head_dropout: list[float] | tuple[float, ...] = (0.3, 0.2)
    drop_rate: float = 0.3
    drop_path_rate: float = 0.2
    image_size: int = 384
    image_mean: list[float] | tuple[float, ...] = IMAGENET_MEAN
    image_std: list[float] | tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    loss: str = "focal"
    focal_gamma: float = 2.0
    focal_alpha: dict[str, float] | list[float] | None = field(default_factory=_default_focal_alpha)
    temperature: float = 1.0
    gradcam_min_side: int = 4
    pretrained_backbone_source: str | None = None
    training_protocol: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self, **kwargs: Any) -> None:
        if self.id2label is None and kwargs.get("num_labels") in (None, len(PAPER_LABELS)):
            self.id2label = dict(PAPER_LABELS)
        super().__post_init__(**kwargs)
        if self.label2id is None or len(self.label2id) != len(self.id2label):
            self.label2id = {name: index for index, name in self.id2label.items()}
        self.head_hidden_sizes = [int(size) for size in self.head_hidden_sizes]
        self.head_dropout = [float(p) for p in self.head_dropout]
        self.image_mean = [float(v) for v in self.image_mean]
        self.image_std = [float(v) for v in self.image_std]
        self._validate()

    def _validate(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if len(self.head_dropout) != len(self.head_hidden_sizes):
            raise ValueError(
                f"head_dropout needs one value per hidden layer: {len(self.head_hidden_sizes)} sizes "
                f"{self.head_hidden_sizes} but {len(self.head_dropout)} dropout values {self.head_dropout}"
            )
        if self.se_reduction < 1:
            raise ValueError(f"se_reduction must be >= 1, got {self.se_reduction}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {self.image_size}")
        if len(self.image_mean) != self.num_channels or len(self.image_std) != self.num_channels:
            raise ValueError(f"image_mean and image_std need {self.num_channels} values each")
        if self.gradcam_min_side < 1:
            raise ValueError(f"gradcam_min_side must be >= 1, got {self.gradcam_min_side}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not (self.num_labels or 0) >= 2:
            raise ValueError("EfficientNet-SE needs at least 2 labels (use 2 for a binary task)")

    def class_weights(self) -> list[float] | None:
        """Resolve ``focal_alpha`` to one weight per class id (``None`` when unweighted).

        Raises ``ValueError`` when the weights do not name exactly the model's labels.
        """
        if self.focal_alpha is None:
            return None
        labels = [self.id2label[index] for index in range(self.num_labels)]
        if isinstance(self.focal_alpha, dict):
            if set(self.focal_alpha) != set(labels):
                raise ValueError(
                    f"focal_alpha names labels {sorted(self.focal_alpha)} but the model's labels are {labels}; "
                    "pass focal_alpha=None or one weight per label"
                )
            return [float(self.focal_alpha[label]) for label in labels]
        if len(self.focal_alpha) != len(labels):
            raise ValueError(
                f"focal_alpha has {len(self.focal_alpha)} weights but the model has {len(labels)} labels {labels}"
            )
        return [float(weight) for weight in self.focal_alpha]


__all__ = ["EfficientNetSEConfig"]
