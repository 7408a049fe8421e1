"""HybridCN-NAS as one transformers model: segment -> two CNN branches with self-attention -> projection,
fusion and factorised projection -> standardise + mRMR-selected features -> token self-attention classifier.

Pipeline of ``forward(pixel_values)`` (pixel_values from ``HybridCNNASImageProcessor``: preprocessed RGB
in [0, 1]):

1. the Attention U-Net predicts a cell mask, grown by ``mask_dilation`` pixels; pixels outside it are set to
   each branch's mean colour (0 after normalisation), so the branches see the white cells of the WHOLE smear
   and their surroundings, not the rest of the background (a mask covering less than ``min_mask_fraction``
   of the image is ignored). One deterministic pass per image,
   batched; the watershed split into single cells is shown by :meth:`stages` and not needed for the call;
2. each branch (timm, e.g. ConvNeXt-Large at 224 px and NASNet-Large at 331 px) gives its final feature
   map, refined by a SAGAN self-attention block and average-pooled;
3. per-branch projections (Linear, ReLU, BatchNorm), a fusion module (each side to ``fusion_dim``,
   concatenation, Linear-ReLU-LayerNorm blocks) and a factorised projection; the feature vector is
   ``[pooled_a, pooled_b, factorised]``;
4. z-scores with the stored training-fold mean/scale, the stored mRMR indices (buffers), then a transformer
   over tokens of ``token_size`` selected features each; logits are divided by ``config.temperature``.

This file is Hub remote code: it imports torch, timm, transformers and its sibling files (no ``leuk``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutput

from .configuration_hybridcn_nas import HybridCNNASConfig
from .segmentation_hybridcn_nas import AttentionUNet, split_cells


class SelfAttention2d(nn.Module):
    """SAGAN self-attention over the positions of a feature map (Zhang et al., 2019).

    Query and key are 1x1 convolutions to ``channels // reduction``, the value keeps all channels, and the
    attended map is added back scaled by a learnable ``gamma`` that starts at 0 (the block starts as the
    identity).
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inner = max(channels // reduction, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        query = self.query(x).flatten(2).transpose(1, 2)  # B, HW, C'
        key = self.key(x).flatten(2)  # B, C', HW
        weights = torch.softmax(torch.bmm(query, key), dim=-1)  # B, HW, HW
        value = self.value(x).flatten(2)  # B, C, HW
        attended = torch.bmm(value, weights.transpose(1, 2)).view(batch, channels, height, width)
        return x + self.gamma * attended


def _mlp(dims: list[int], final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if final_activation or index < len(dims) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@dataclass
class HybridFeatures:
    """What the two branches produce for a batch (all ``(N, width)`` float tensors)."""

    pooled_a: torch.Tensor
    pooled_b: torch.Tensor
    fused: torch.Tensor

    @property
    def vector(self) -> torch.Tensor:
        """The feature vector that standardisation and mRMR work on: ``[pooled_a, pooled_b, fused]``."""
        return torch.cat([self.pooled_a, self.pooled_b, self.fused], dim=1)


class HybridFeatureExtractor(nn.Module):
    """Phase 3: two timm branches, self-attention, pooling, projections, fusion, factorised projection.

    Fills the configuration's branch sizes, channels and normalisation from timm when they are ``None``.
    """

    def __init__(self, config: HybridCNNASConfig):
        super().__init__()
        self.branch_a = timm.create_model(config.branch_a, pretrained=False, num_classes=0, global_pool="")
        self.branch_b = timm.create_model(config.branch_b, pretrained=False, num_classes=0, global_pool="")
        for side, branch in (("a", self.branch_a), ("b", self.branch_b)):
            data_config = branch.pretrained_cfg or {}
            if getattr(config, f"branch_{side}_image_size") is None:
                setattr(config, f"branch_{side}_image_size", int(data_config.get("input_size", (3, 224, 224))[-1]))
            if getattr(config, f"branch_{side}_mean") is None:
                mean = data_config.get("mean", (0.485, 0.456, 0.406))
                setattr(config, f"branch_{side}_mean", [float(v) for v in mean])
            if getattr(config, f"branch_{side}_std") is None:
                std = data_config.get("std", (0.229, 0.224, 0.225))
                setattr(config, f"branch_{side}_std", [float(v) for v in std])
            setattr(config, f"branch_{side}_channels", int(branch.num_features))
            # timm initialised the backbone its own way: keep it (post_init skips flagged modules)
            for module in branch.modules():
                module._is_hf_initialized = True
        self.config = config
        channels_a, channels_b = config.branch_a_channels, config.branch_b_channels
        projection_a, projection_b = config.projection_dims
        fusion, fused_width = config.fusion_dim, 2 * config.fusion_dim
        self.attention_a = SelfAttention2d(channels_a, config.attention_reduction)
        self.attention_b = SelfAttention2d(channels_b, config.attention_reduction)
        self.projection_a = nn.Sequential(
            nn.Linear(channels_a, projection_a), nn.ReLU(inplace=True), nn.BatchNorm1d(projection_a))
        self.projection_b = nn.Sequential(
            nn.Linear(channels_b, projection_b), nn.ReLU(inplace=True), nn.BatchNorm1d(projection_b))
        self.fusion_a = nn.Linear(projection_a, fusion)
        self.fusion_b = nn.Linear(projection_b, fusion)
        blocks: list[nn.Module] = []
        for _ in range(config.fusion_blocks):
            blocks += [nn.Linear(fused_width, fused_width), nn.ReLU(inplace=True), nn.LayerNorm(fused_width)]
        self.fusion = nn.Sequential(*blocks)
        self.factorized = _mlp([fused_width, *config.factorized_dims], final_activation=False)
        config.num_features = channels_a + channels_b + config.factorized_dims[-1]

    def branch_input(self, pixel_values: torch.Tensor, side: str, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``pixel_values`` resized to the branch's size and normalised, background zeroed by ``mask``."""
        size = getattr(self.config, f"branch_{side}_image_size")
        x = pixel_values
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=size < x.shape[-1])
        mean = torch.tensor(getattr(self.config, f"branch_{side}_mean"), dtype=x.dtype, device=x.device)
        std = torch.tensor(getattr(self.config, f"branch_{side}_std"), dtype=x.dtype, device=x.device)
        x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        if mask is not None:
            x = x * F.interpolate(mask.to(x.dtype), size=(size, size), mode="bilinear", align_corners=False)
        return x

    def branch_maps(self, pixel_values: torch.Tensor, mask: Optional[torch.Tensor] = None):
        """Final feature maps of both branches after self-attention (for Grad-CAM and :meth:`forward`)."""
        map_a = self.attention_a(self.branch_a.forward_features(self.branch_input(pixel_values, "a", mask)))
        map_b = self.attention_b(self.branch_b.forward_features(self.branch_input(pixel_values, "b", mask)))
        return map_a, map_b

    def forward(self, pixel_values: torch.Tensor, mask: Optional[torch.Tensor] = None) -> HybridFeatures:
        map_a, map_b = self.branch_maps(pixel_values, mask)
        pooled_a, pooled_b = map_a.mean(dim=(2, 3)), map_b.mean(dim=(2, 3))
        fused = torch.cat(
            [self.fusion_a(self.projection_a(pooled_a)), self.fusion_b(self.projection_b(pooled_b))], dim=1
        )
        return HybridFeatures(pooled_a, pooled_b, self.factorized(self.fusion(fused)))

    def feature_names(self) -> list[str]:
        """A readable name for every entry of the feature vector: which part of the network it comes from
        (branch A's or branch B's pooled attention map, or the fusion of both) and its place there."""
        config = self.config
        return (
            [f"branch A ({config.branch_a}) channel {i + 1}" for i in range(config.branch_a_channels)]
            + [f"branch B ({config.branch_b}) channel {i + 1}" for i in range(config.branch_b_channels)]
            + [f"fusion of both branches, unit {i + 1}" for i in range(config.factorized_dims[-1])]
        )


class TokenAttentionBlock(nn.Module):
    """Post-norm transformer block: multi-head self-attention and a feed-forward layer, each optional."""

    def __init__(self, config: HybridCNNASConfig):
        super().__init__()
        width, dropout = config.classifier_dim, config.classifier_dropout
        self.attention = (
            nn.MultiheadAttention(width, config.classifier_heads, dropout=dropout, batch_first=True)
            if config.use_attention else None
        )
        self.attention_norm = nn.LayerNorm(width) if config.use_attention else None
        self.feed_forward = (
            nn.Sequential(nn.Linear(width, config.classifier_ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                          nn.Linear(config.classifier_ffn_dim, width))
            if config.use_feed_forward else None
        )
        self.feed_forward_norm = nn.LayerNorm(width) if config.use_feed_forward else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, output_attentions: bool = False):
        weights = None
        if self.attention is not None:
            attended, weights = self.attention(hidden, hidden, hidden, need_weights=output_attentions,
                                               average_attn_weights=False)
            hidden = self.attention_norm(hidden + self.dropout(attended))
        if self.feed_forward is not None:
            hidden = self.feed_forward_norm(hidden + self.dropout(self.feed_forward(hidden)))
        return hidden, weights


class TokenAttentionClassifier(nn.Module):
    """Phase 4 classifier: the selected features, in mRMR order, are cut into ``num_tokens`` tokens of
    ``token_size`` features; each token has its own Linear to ``classifier_dim`` (then LayerNorm, ReLU,
    dropout) plus a learned position embedding; transformer blocks attend over the tokens; mean (or CLS)
    pooling; head Linear -> ReLU -> Dropout -> Linear."""

    def __init__(self, config: HybridCNNASConfig):
        super().__init__()
        tokens, token_size, width = config.num_tokens, config.token_size, config.classifier_dim
        self.num_tokens, self.token_size = tokens, token_size
        self.token_weight = nn.Parameter(torch.empty(tokens, token_size, width))
        self.token_bias = nn.Parameter(torch.zeros(tokens, width))
        self.token_norm = nn.LayerNorm(width)
        self.token_dropout = nn.Dropout(config.input_dropout)
        self.position = nn.Parameter(torch.zeros(1, tokens, width))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if config.pooling == "cls" else None
        self.blocks = nn.ModuleList(TokenAttentionBlock(config) for _ in range(config.classifier_layers))
        self.head = nn.Sequential(
            nn.Linear(width, config.head_hidden_dim), nn.ReLU(inplace=True), nn.Dropout(config.classifier_dropout),
            nn.Linear(config.head_hidden_dim, config.num_labels),
        )
        self.reset_token_parameters()

    def reset_token_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.token_size)
        init.uniform_(self.token_weight, -bound, bound)
        init.zeros_(self.token_bias)
        init.normal_(self.position, std=0.02)
        if self.cls_token is not None:
            init.normal_(self.cls_token, std=0.02)

    def forward(self, selected: torch.Tensor, output_attentions: bool = False):
        """``selected``: (N, num_tokens * token_size) standardised features -> (logits, attentions or None)."""
        tokens = selected.view(selected.shape[0], self.num_tokens, self.token_size)
        hidden = torch.einsum("nts,tsd->ntd", tokens, self.token_weight) + self.token_bias
        hidden = self.token_dropout(F.relu(self.token_norm(hidden))) + self.position
        if self.cls_token is not None:
            hidden = torch.cat([self.cls_token.expand(hidden.shape[0], -1, -1), hidden], dim=1)
        attentions = []
        for block in self.blocks:
            hidden, weights = block(hidden, output_attentions)
            attentions.append(weights)
        pooled = hidden[:, 0] if self.cls_token is not None else hidden.mean(dim=1)
        kept = tuple(w for w in attentions if w is not None)
        return self.head(pooled), (kept if output_attentions and kept else None)


class HybridCNNASPreTrainedModel(PreTrainedModel):
    config_class = HybridCNNASConfig
    base_model_prefix = "hybridcn_nas"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            if module.weight is not None:
                init.ones_(module.weight)
                init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.MultiheadAttention):
            module._reset_parameters()
        elif isinstance(module, SelfAttention2d):
            init.zeros_(module.gamma)
        elif isinstance(module, TokenAttentionClassifier):
            module.reset_token_parameters()
        elif isinstance(module, HybridCNNASForImageClassification):
            init.zeros_(module.feature_mean)
            init.ones_(module.feature_scale)
            init.copy_(module.selected_indices, torch.arange(module.selected_indices.numel()))


class HybridCNNASForImageClassification(HybridCNNASPreTrainedModel):
    """The four phases in one module; ``forward(pixel_values)`` returns temperature-scaled ``logits``.

    Buffers ``feature_mean``/``feature_scale`` (training-fold z-score statistics of the feature vector) and
    ``selected_indices`` (mRMR order) are saved with the weights. :meth:`stages` returns every intermediate
    result for one image.
    """

    def __init__(self, config: HybridCNNASConfig):
        super().__init__(config)
        self.segmenter = AttentionUNet(config.segmenter_widths) if config.use_segmenter else None
        self.extractor = HybridFeatureExtractor(config)
        if config.num_selected > config.num_features:
            raise ValueError(
                f"num_selected ({config.num_selected}) exceeds the {config.num_features} features of the branches"
            )
        self.register_buffer("feature_mean", torch.zeros(config.num_features))
        self.register_buffer("feature_scale", torch.ones(config.num_features))
        self.register_buffer("selected_indices", torch.arange(config.num_selected, dtype=torch.long))
        self.classifier = TokenAttentionClassifier(config)
        self.image_processor = None
        self.post_init()

    # ---- phases -------------------------------------------------------------------------------------
    def segmenter_input(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` resized to ``segmenter_image_size`` (what the segmenter is trained on)."""
        size = self.config.segmenter_image_size
        if tuple(pixel_values.shape[-2:]) == (size, size):
            return pixel_values
        return F.interpolate(pixel_values, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=size < pixel_values.shape[-1])

    def cell_probabilities(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Segmenter probabilities (N, 1, H, W) at the size of ``pixel_values``."""
        size = self.config.segmenter_image_size
        height, width = pixel_values.shape[-2:]
        probabilities = torch.sigmoid(self.segmenter(self.segmenter_input(pixel_values)))
        if (height, width) != (size, size):
            probabilities = F.interpolate(probabilities, size=(height, width), mode="bilinear", align_corners=False)
        return probabilities

    def cell_mask(self, pixel_values: torch.Tensor) -> Optional[torch.Tensor]:
        """Binary mask (N, 1, H, W) that gates the branches: the segmenter's cells grown by
        ``config.mask_dilation`` pixels, all ones where the segmenter found (almost) nothing; ``None``
        without a segmenter."""
        if self.segmenter is None:
            return None
        return self.gate_from_probabilities(self.cell_probabilities(pixel_values))

    def gate_from_probabilities(self, probabilities: torch.Tensor) -> torch.Tensor:
        """:meth:`cell_mask` from the segmenter's cell probabilities (N, 1, H, W) already computed."""
        mask = (probabilities > self.config.mask_threshold).to(probabilities.dtype)
        too_small = mask.mean(dim=(1, 2, 3)) < self.config.min_mask_fraction
        radius = self.config.mask_dilation
        if radius:
            mask = F.max_pool2d(mask, kernel_size=2 * radius + 1, stride=1, padding=radius)
        return torch.where(too_small.view(-1, 1, 1, 1), torch.ones_like(mask), mask)

    def extract_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The raw feature vector (N, num_features) of phase 3, after masking."""
        return self.extractor(pixel_values, self.cell_mask(pixel_values)).vector

    def select_features(self, features: torch.Tensor) -> torch.Tensor:
        """z-score with the stored training statistics, then keep the mRMR-selected columns."""
        standardized = (features - self.feature_mean) / self.feature_scale
        return standardized.index_select(1, self.selected_indices)

    def forward(
        self,
        pixel_values: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        output_attentions: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ) -> Union[ImageClassifierOutput, tuple]:
        """Temperature-scaled logits of ``pixel_values``; with ``labels`` also the cross-entropy ``loss``;
        ``return_dict=False`` returns the tuple ``(loss?, logits, attentions?)``."""
        if pixel_values is None:
            raise ValueError("pixel_values is required")
        return_dict = self.config.return_dict if return_dict is None else return_dict
        output_attentions = bool(output_attentions if output_attentions is not None else self.config.output_attentions)
        pixel_values = pixel_values.to(self.feature_mean.dtype)
        selected = self.select_features(self.extract_features(pixel_values))
        logits, attentions = self.classifier(selected, output_attentions=output_attentions)
        logits = logits / self.config.temperature
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        if not return_dict:
            return tuple(value for value in (loss, logits, attentions) if value is not None)
        return ImageClassifierOutput(loss=loss, logits=logits, attentions=attentions)

    # ---- training helpers ---------------------------------------------------------------------------
    def set_feature_selection(self, mean: Any, scale: Any, indices: Any) -> None:
        """Store fitted standardisation statistics and mRMR indices (``len(indices) == num_selected``)."""
        indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if indices.numel() != self.config.num_selected:
            raise ValueError(f"{indices.numel()} indices for num_selected={self.config.num_selected}")
        if indices.min() < 0 or indices.max() >= self.config.num_features:
            raise ValueError(f"feature indices must lie in [0, {self.config.num_features})")
        device = self.feature_mean.device
        self.feature_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=self.feature_mean.dtype, device=device))
        self.feature_scale.copy_(torch.as_tensor(np.asarray(scale), dtype=self.feature_scale.dtype, device=device))
        self.selected_indices.copy_(indices.to(device))

    def load_pretrained_backbones(self) -> None:
        """Load timm's ImageNet weights into both branches (needs the network or a filled cache)."""
        branches = ((self.config.branch_a, self.extractor.branch_a), (self.config.branch_b, self.extractor.branch_b))
        for name, branch in branches:
            source = timm.create_model(name, pretrained=True, num_classes=0, global_pool="")
            branch.load_state_dict(source.state_dict(), strict=True)

    # ---- explanation --------------------------------------------------------------------------------
    def _resolve_processor(self, processor: Any = None):
        from .image_processing_hybridcn_nas import HybridCNNASImageProcessor

        if processor is not None:
            return processor
        if self.image_processor is None:
            try:
                self.image_processor = HybridCNNASImageProcessor.from_pretrained(self.name_or_path)
            except (OSError, ValueError, TypeError):
                warnings.warn(
                    "no preprocessor_config.json next to the weights: stages() uses default preprocessing "
                    "without stain normalisation; pass the model's processor for faithful results",
                    stacklevel=3,
                )
                self.image_processor = HybridCNNASImageProcessor.from_model_config(self.config)
        return self.image_processor

    @torch.no_grad()
    def stages(self, image: Any, processor: Any = None, top_k: int = 10) -> dict[str, Any]:
        """Every phase for one image (PIL image or RGB array), for display.

        ``processor`` defaults to ``self.image_processor``, else the one saved next to the weights. Returns a
        dict with uint8 RGB arrays ``"input"`` (resized), ``"stain_normalized"``, ``"multiscale"``,
        ``"edge_enhanced"``, ``"clahe"``, ``"denoised"`` (a disabled step repeats the previous image) and
        ``"preprocessed"`` (what the model sees); ``"mask_probability"`` (float32 H x W), ``"mask"`` (bool),
        ``"branch_view"`` (uint8 RGB: the preprocessed image as the CNN branches see it, outside the grown
        mask set to branch A's mean colour), ``"mask_dilation"`` (the growth, pixels), ``"cell_labels"``
        (int32 watershed labels) and ``"cells"`` (per cell ``label``, ``box``
        (x0, y0, x1, y1), ``area``, ``centroid``, ``crop``); ``"probabilities"`` ({label: p}), ``"label"``;
        ``"top_features"`` (the ``top_k`` selected features furthest from the training mean: ``name``,
        ``index``, ``mrmr_rank``, ``z``) and ``"token_attention"`` (attention each token receives, averaged
        over layers, heads and queries; empty without attention).
        """
        processor = self._resolve_processor(processor)
        steps = processor.preprocess_steps(image)
        images: dict[str, Any] = {"input": steps["input"]}
        previous = steps["input"]
        for key, step in (("stain_normalized", "stain"), ("multiscale", "multiscale"), ("edge_enhanced", "edge"),
                          ("clahe", "clahe"), ("denoised", "denoise")):
            previous = steps.get(step, previous)
            images[key] = previous
        images["preprocessed"] = previous

        device = self.feature_mean.device
        dtype = next(self.parameters()).dtype
        pixel_values = torch.from_numpy(np.ascontiguousarray(previous.transpose(2, 0, 1))).to(device, dtype)
        pixel_values = pixel_values.unsqueeze(0) / 255.0
        if self.segmenter is not None:
            probabilities = self.cell_probabilities(pixel_values)
            probability = probabilities[0, 0].float().cpu().numpy()
            gate_tensor = self.gate_from_probabilities(probabilities)
            gate = gate_tensor[0, 0].bool().cpu().numpy()
        else:
            probability = np.ones(previous.shape[:2], dtype=np.float32)
            gate_tensor, gate = None, np.ones(previous.shape[:2], dtype=bool)
        mask = probability > self.config.mask_threshold
        fill = np.asarray(self.config.branch_a_mean, dtype=np.float32) * 255
        branch_view = np.where(gate[..., None], previous, fill.round().astype(np.uint8)).astype(np.uint8)
        min_area = max(1, int(self.config.min_cell_area * mask.size))
        cell_labels, cells = split_cells(mask, previous, peak_ratio=self.config.watershed_peak_ratio, min_area=min_area)
        for cell in cells:
            x0, y0, x1, y1 = cell["box"]
            cell["crop"] = previous[y0:y1, x0:x1].copy()

        features = self.extractor(pixel_values, gate_tensor).vector  # extract_features, segmenter run once
        selected = self.select_features(features)
        logits, attentions = self.classifier(selected, output_attentions=True)
        probabilities = torch.softmax(logits / self.config.temperature, dim=-1)[0].float().cpu().numpy()
        id2label = self.config.id2label
        scores = {id2label[i]: float(p) for i, p in enumerate(probabilities)}

        z = selected[0].float().cpu().numpy()
        names = self.extractor.feature_names()
        indices = self.selected_indices.cpu().numpy()
        order = np.argsort(-np.abs(z), kind="stable")[:top_k]
        top = [{"name": names[indices[r]], "index": int(indices[r]), "mrmr_rank": int(r) + 1, "z": float(z[r])}
               for r in order]
        if attentions:
            stacked = torch.stack([a[0] for a in attentions]).float()  # layers, heads, queries, keys
            token_attention = stacked.mean(dim=(0, 1, 2)).cpu().numpy()
            if self.classifier.cls_token is not None:
                token_attention = token_attention[1:]
        else:
            token_attention = np.zeros(0, dtype=np.float32)
        return {
            **images,
            "mask_probability": probability,
            "mask": mask,
            "branch_view": branch_view,
            "mask_dilation": int(self.config.mask_dilation),
            "cell_labels": cell_labels,
            "cells": cells,
            "probabilities": scores,
            "label": max(scores, key=scores.get),
            "top_features": top,
            "token_attention": token_attention,
        }


__all__ = [
    "HybridCNNASForImageClassification",
    "HybridCNNASPreTrainedModel",
    "HybridFeatureExtractor",
    "HybridFeatures",
    "SelfAttention2d",
    "TokenAttentionClassifier",
]
