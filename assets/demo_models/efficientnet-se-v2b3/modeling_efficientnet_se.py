"""EfficientNet-SE for image classification: timm backbone -> squeeze-and-excitation on the final feature map
-> global average pooling -> MLP head (Braga & Dantas, arXiv 2601.01026).

This file is Hub remote code: it imports only torch, timm and transformers (no ``leuk``).
"""

import math
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

from .configuration_efficientnet_se import EfficientNetSEConfig


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Multi-class focal loss (Lin et al., 2017): ``-alpha[y] * (1 - p_y) ** gamma * log(p_y)``.

    Args:
        logits: ``(N, K)`` raw scores.
        labels: ``(N,)`` class ids.
        gamma: focusing parameter; 0 gives (alpha-weighted) cross-entropy.
        alpha: optional ``(K,)`` per-class weights.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    log_p_true = log_probs.gather(1, labels.long()[:, None]).squeeze(1)
    loss = -((1.0 - log_p_true.exp()) ** gamma) * log_p_true
    if alpha is not None:
        loss = loss * alpha.to(loss)[labels.long()]
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class SqueezeExcitation(nn.Module):
    """Channel attention on an ``(N, C, H, W)`` map: average over space, Linear C -> C/r, ReLU, Linear -> C,
    sigmoid, then rescale each channel of the map."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.reduce = nn.Linear(channels, hidden)
        self.act = nn.ReLU()
        self.expand = nn.Linear(hidden, channels)
        self.gate = nn.Sigmoid()

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        squeezed = feature_map.mean(dim=(2, 3))
        channel_weights = self.gate(self.expand(self.act(self.reduce(squeezed))))
        return feature_map * channel_weights[:, :, None, None]


class ClassificationHead(nn.Sequential):
    """``[Dropout -> Linear -> BatchNorm1d -> ReLU] * len(hidden_sizes) -> Linear(num_labels)``.

    With no hidden sizes it is a single Linear layer (the plain classifier of the baselines).
    """

    def __init__(
        self, in_features: int, hidden_sizes: list[int], dropouts: list[float], num_labels: int
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for hidden, dropout in zip(hidden_sizes, dropouts, strict=True):
            layers += [nn.Dropout(dropout), nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_labels))
        super().__init__(*layers)


class EfficientNetSEPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by the EfficientNet-SE models."""

    config_class = EfficientNetSEConfig
    main_input_name = "pixel_values"
    input_modalities = "image"
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Only the layers this file adds (SE block, head) are initialised here, with PyTorch's default scheme
        # as in the paper's code; the timm backbone keeps timm's own initialisation or its loaded weights.
        # transformers calls this per leaf layer, also for layers missing from a loaded checkpoint.
        added = (part for part in (getattr(self, "se", None), getattr(self, "head", None)) if part is not None)
        if not any(module is layer for part in added for layer in part.modules()):
            return
        if isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            bound = 1.0 / math.sqrt(module.in_features)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class EfficientNetSEForImageClassification(EfficientNetSEPreTrainedModel):
    """EfficientNet-SE classifier with a timm-style interface.

    ``forward_features`` -> ``pool`` -> ``forward_head`` gives raw logits; ``forward`` divides them by
    ``config.temperature`` so that every softmax of its output is calibrated, and computes the training loss
    (focal or cross-entropy) on the raw logits.
    """

    def __init__(self, config: EfficientNetSEConfig) -> None:
        super().__init__(config)
        config.class_weights()  # fails early when focal_alpha does not match the labels
        self.backbone = _create_backbone(config, pretrained=False)
        self.num_features = int(getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features)
        self.se = SqueezeExcitation(self.num_features, config.se_reduction) if config.use_se else None
        hidden_sizes = config.head_hidden_sizes if config.use_head else []
        dropouts = config.head_dropout if config.use_head else []
        self.head = ClassificationHead(self.num_features, hidden_sizes, dropouts, config.num_labels)
        self._gradcam_layer_name: str | None = None
        self.post_init()

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The backbone's final ``(N, C, H, W)`` feature map: timm's forward with no pooling and no classifier
        (for VGG this includes its convolutional fc6/fc7)."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values must have shape (batch, {self.config.num_channels}, height, width), "
                f"got {tuple(pixel_values.shape)}"
            )
        features = self.backbone(pixel_values)
        if features.ndim != 4:
            raise ValueError(
                f"backbone {self.config.backbone!r} returns a {features.ndim}-D output; EfficientNet-SE needs a "
                "convolutional backbone that returns an (N, C, H, W) feature map"
            )
        return features

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """SE channel attention (when enabled), then global average pooling to ``(N, C)``."""
        if self.se is not None:
            features = self.se(features)
        return features.mean(dim=(2, 3))

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Raw logits ``(N, num_labels)`` from pooled features (not divided by the temperature)."""
        return self.head(pooled)

    def compute_loss(self, raw_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The configured training loss (focal with per-class alpha, or plain cross-entropy) on raw logits."""
        if self.config.loss == "ce":
            return F.cross_entropy(raw_logits.float(), labels.long())
        weights = self.config.class_weights()
        alpha = None if weights is None else torch.tensor(weights, device=raw_logits.device)
        return focal_loss(raw_logits, labels, gamma=self.config.focal_gamma, alpha=alpha)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> ImageClassifierOutputWithNoAttention | tuple[torch.Tensor, ...]:
        """Classify a batch of images.

        Args:
            pixel_values: ``(N, C, H, W)`` normalised images (see ``EfficientNetSEImageProcessor``).
            labels: optional ``(N,)`` class ids; when given, the loss is computed on the raw logits.
            return_dict: return a tuple ``(loss?, logits)`` when ``False``.

        Returns:
            ``ImageClassifierOutputWithNoAttention`` with ``logits`` already divided by ``config.temperature``.
        """
        raw_logits = self.forward_head(self.pool(self.forward_features(pixel_values)))
        loss = None if labels is None else self.compute_loss(raw_logits, labels)
        logits = raw_logits / self.config.temperature
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if not return_dict:
            return (logits,) if loss is None else (loss, logits)
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits)

    def load_pretrained_backbone(self) -> str:
        """Replace the backbone's weights with timm's ImageNet weights (downloaded from the Hub).

        Returns the weights' source, also recorded in ``config.pretrained_backbone_source``.
        Raises ``RuntimeError`` when the weights cannot be obtained (e.g. offline).
        """
        try:
            pretrained = _create_backbone(self.config, pretrained=True)
        except Exception as err:  # timm surfaces network/cache failures as many exception types
            raise RuntimeError(
                f"could not load ImageNet weights for backbone {self.config.backbone!r} ({type(err).__name__}: "
                f"{err}); they cannot be downloaded offline: train with --no-pretrained (random initialisation) "
                "or put the timm weights in the Hugging Face cache"
            ) from err
        self.backbone.load_state_dict(pretrained.state_dict())
        cfg = pretrained.pretrained_cfg
        source = cfg.get("hf_hub_id") or f"timm/{self.config.backbone}.{cfg.get('tag', '')}".rstrip(".")
        self.config.pretrained_backbone_source = f"{source} (timm ImageNet weights)"
        return self.config.pretrained_backbone_source

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory in the backbone (timm's gradient checkpointing)."""
        self.backbone.set_grad_checkpointing(enable)

    def _set_gradient_checkpointing(
        self, enable: bool = True, gradient_checkpointing_func: Any = None, every_n_layers: int = 1
    ) -> None:
        # transformers' activation_checkpointing_enable() lands here; timm checkpoints its own blocks.
        self.set_grad_checkpointing(enable)

    @property
    def data_config(self) -> dict:
        """timm-style input description: ``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``."""
        size = self.config.image_size
        return {
            "input_size": (self.config.num_channels, size, size),
            "mean": tuple(self.config.image_mean),
            "std": tuple(self.config.image_std),
            "interpolation": self.config.interpolation,
            "crop_pct": 1.0,
        }

    def get_gradcam_layer(self) -> nn.Module:
        """The backbone module whose output is the last spatial feature map (for Grad-CAM).

        Found once by a probe forward pass: the last module to produce a 4-D map with the final map's
        shape (EfficientNet: ``bn2``; ResNet: ``layer4``). When that map has fewer than
        ``config.gradcam_min_side`` cells a side (small inputs; VGG's 1x1 convolutional fc layers), the last
        module whose map has at least that many is returned instead (the stage before, for a small input).
        """
        if self._gradcam_layer_name is None:
            self._gradcam_layer_name = self._probe_gradcam_layer()
        return self.backbone.get_submodule(self._gradcam_layer_name)

    def _probe_gradcam_layer(self) -> str:
        produced: list[tuple[str, torch.Size]] = []

        def record(name):
            def hook(module, inputs, output):
                if isinstance(output, torch.Tensor) and output.ndim == 4:
                    if not (inputs and output is inputs[0]):
                        produced.append((name, output.shape))

            return hook

        handles = [
            module.register_forward_hook(record(name)) for name, module in self.backbone.named_modules() if name
        ]
        was_training = self.training
        parameter = next(self.parameters())
        size = self.config.image_size
        probe = parameter.new_zeros(1, self.config.num_channels, size, size)
        try:
            self.eval()
            with torch.no_grad():
                final_shape = self.backbone(probe).shape
        finally:
            self.train(was_training)
            for handle in handles:
                handle.remove()
        matching = [name for name, shape in produced if shape == final_shape]
        min_side = getattr(self.config, "gradcam_min_side", 4)
        if min(final_shape[-2:]) < min_side or not matching:
            matching = [name for name, shape in produced if min(shape[-2:]) >= min_side]
        if not matching:
            matching = [name for name, shape in produced if shape[-2] * shape[-1] > 1]
        if not matching:
            raise ValueError(f"backbone {self.config.backbone!r} produces no spatial feature map for Grad-CAM")
        return matching[-1]


def _create_backbone(config: EfficientNetSEConfig, *, pretrained: bool) -> nn.Module:
    options = {"drop_rate": config.drop_rate}
    if config.drop_path_rate:
        options["drop_path_rate"] = config.drop_path_rate
    try:
        return timm.create_model(
            config.backbone,
            pretrained=pretrained,
            num_classes=0,
            global_pool="",
            in_chans=config.num_channels,
            **options,
        )
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"unknown timm backbone {config.backbone!r} (see timm.list_models())") from err
        raise


__all__ = ["EfficientNetSEForImageClassification", "EfficientNetSEPreTrainedModel", "focal_loss"]
