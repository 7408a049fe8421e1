"""Configuration of HybridCN-NAS: Attention U-Net segmenter, two timm CNN branches with self-attention,
projection/fusion layers, fitted standardisation + mRMR selection, and a token self-attention classifier
(D Cruze et al., "HybridCN-NAS"; 4 classes of the Aria ALL set).

This file is Hub remote code: it imports only transformers (no ``leuk``).
"""

from dataclasses import field
from typing import Any

from transformers import PreTrainedConfig

ARIA_LABELS = {0: "Benign", 1: "Early", 2: "Pre", 3: "Pro"}
POOLINGS = ("mean", "cls")


class HybridCNNASConfig(PreTrainedConfig):
    r"""Hyperparameters of HybridCN-NAS; the defaults are the paper's (``hybridcn-nas`` preset).

    Args:
        image_size: side of the square ``pixel_values`` (RGB in [0, 1], already preprocessed by
            ``HybridCNNASImageProcessor``); every stage resizes from it.
        use_segmenter: apply the Attention U-Net mask before the branches (background set to each branch's
            mean colour). ``False`` classifies the whole image.
        segmenter_widths: channels of the U-Net encoder levels (paper 64-128-256-512-1024); the last is the
            bottleneck, so ``segmenter_image_size`` must be divisible by ``2 ** (len - 1)``.
        segmenter_image_size: side at which the segmenter runs.
        mask_threshold: probability above which a pixel is cell.
        min_mask_fraction: a mask covering less of the image than this is ignored (the whole image is
            classified), so a segmentation failure never blanks the input.
        mask_dilation: pixels (at the input resolution) by which the cell mask grows, as a square, before
            it gates the branches, so that they see each white cell's rim and its neighbourhood; 0 keeps the
            segmenter's mask as it is.
        watershed_peak_ratio: watershed seeds are the pixels whose distance to the background exceeds this
            fraction of their connected component's largest distance.
        min_cell_area: smallest cell kept by the watershed, as a fraction of the image area.
        branch_a, branch_b: timm model names (built with ``pretrained=False``; ImageNet weights are loaded by
            training code only).
        branch_a_image_size, branch_b_image_size: input side of each branch (``None``: timm's native size).
        branch_a_mean, branch_a_std, branch_b_mean, branch_b_std: normalisation of each branch's input
            (``None``: timm's pretrained configuration).
        branch_a_channels, branch_b_channels: channels of each branch's final feature map (filled in when
            the model is built).
        attention_reduction: query/key width of the self-attention blocks is ``channels // reduction``.
        projection_dims: widths of the per-branch projections (Linear, ReLU, BatchNorm); paper 1024, 2048.
        fusion_dim: each projection is mapped to this width before concatenation; paper 1536.
        fusion_blocks: number of Linear-ReLU-LayerNorm blocks on the concatenation.
        factorized_dims: the factorised projection after fusion (paper 3072 -> 1536 -> 2048).
        num_features: length of the feature vector ``[pooled_a, pooled_b, factorised]`` (filled in).
        num_selected: features kept by mRMR (paper 2000); a multiple of ``token_size``.
        token_size: selected features per classifier token (2000 / 100 = 20 tokens).
        classifier_dim, classifier_heads, classifier_layers, classifier_ffn_dim: the token transformer.
        classifier_dropout: dropout in attention and feed-forward; ``input_dropout`` after the token
            embedding; ``head_hidden_dim``: width of the 2-layer head.
        use_attention, use_feed_forward: switch the transformer's sublayers (ablations).
        pooling: ``"mean"`` over tokens or a learned ``"cls"`` token.
        temperature: logits are divided by it (fitted on validation data after training).
        pretrained_backbone_source: where the branches' initial weights came from (``None``: random init).
        training_protocol: free-form record of how the weights were trained (for the model card).
    """

    model_type = "hybridcn_nas"

    image_size: int = 331
    use_segmenter: bool = True
    segmenter_widths: list[int] | tuple[int, ...] = (64, 128, 256, 512, 1024)
    segmenter_image_size: int = 256
    mask_threshold: float = 0.5
    min_mask_fraction: float = 0.002
    mask_dilation: int = 0
    watershed_peak_ratio: float = 0.7
    min_cell_area: float = 0.001
    branch_a: str = "convnext_large"
    branch_b: str = "nasnetalarge"
    branch_a_image_size: int | None = None
    branch_b_image_size: int | None = None
    branch_a_mean: list[float] | tuple[float, ...] | None = None
    branch_a_std: list[float] | tuple[float, ...] | None = None
    branch_b_mean: list[float] | tuple[float, ...] | None = None
    branch_b_std: list[float] | tuple[float, ...] | None = None
    branch_a_channels: int | None = None
    branch_b_channels: int | None = None
    attention_reduction: int = 8
    projection_dims: list[int] | tuple[int, ...] = (1024, 2048)
    fusion_dim: int = 1536
    fusion_blocks: int = 2
    factorized_dims: list[int] | tuple[int, ...] = (1536, 2048)
    num_features: int | None = None
    num_selected: int = 2000
    token_size: int = 100
    classifier_dim: int = 512
    classifier_heads: int = 8
    classifier_layers: int = 3
    classifier_ffn_dim: int = 1024
    classifier_dropout: float = 0.1
    input_dropout: float = 0.2
    head_hidden_dim: int = 256
    use_attention: bool = True
    use_feed_forward: bool = True
    pooling: str = "mean"
    temperature: float = 1.0
    pretrained_backbone_source: str | None = None
    training_protocol: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self, **kwargs: Any) -> None:
        if self.id2label is None and kwargs.get("num_labels") in (None, len(ARIA_LABELS)):
            self.id2label = dict(ARIA_LABELS)
        super().__post_init__(**kwargs)
        if self.label2id is None or len(self.label2id) != len(self.id2label):
            self.label2id = {name: index for index, name in self.id2label.items()}
        self.segmenter_widths = [int(width) for width in self.segmenter_widths]
        self.projection_dims = [int(width) for width in self.projection_dims]
        self.factorized_dims = [int(width) for width in self.factorized_dims]
        for name in ("branch_a_mean", "branch_a_std", "branch_b_mean", "branch_b_std"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, [float(v) for v in value])
        self._validate()

    @property
    def num_tokens(self) -> int:
        """Tokens the classifier attends over: ``num_selected // token_size``."""
        return self.num_selected // self.token_size

    def _validate(self) -> None:
        if len(self.segmenter_widths) < 2:
            raise ValueError(f"segmenter_widths needs at least 2 levels, got {self.segmenter_widths}")
        factor = 2 ** (len(self.segmenter_widths) - 1)
        if self.segmenter_image_size % factor:
            raise ValueError(
                f"segmenter_image_size {self.segmenter_image_size} must be divisible by {factor} "
                f"for {len(self.segmenter_widths)} U-Net levels"
            )
        if len(self.projection_dims) != 2:
            raise ValueError(f"projection_dims needs one width per branch (2), got {self.projection_dims}")
        if not self.factorized_dims:
            raise ValueError("factorized_dims needs at least one width")
        if self.num_selected < 1 or self.token_size < 1 or self.num_selected % self.token_size:
            raise ValueError(
                f"num_selected ({self.num_selected}) must be a positive multiple of token_size ({self.token_size})"
            )
        if self.classifier_dim % self.classifier_heads:
            raise ValueError(
                f"classifier_dim {self.classifier_dim} is not divisible by classifier_heads {self.classifier_heads}"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 0 < self.mask_threshold < 1:
            raise ValueError(f"mask_threshold must be in (0, 1), got {self.mask_threshold}")
        if not (isinstance(self.mask_dilation, int) and self.mask_dilation >= 0):
            raise ValueError(f"mask_dilation must be a whole number of pixels >= 0, got {self.mask_dilation!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not (self.num_labels or 0) >= 2:
            raise ValueError("HybridCN-NAS needs at least 2 labels")


__all__ = ["HybridCNNASConfig"]
