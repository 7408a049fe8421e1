"""Phase 2 of HybridCN-NAS: an Attention U-Net (Oktay et al., 2018) for white-cell masks, and a marker-based
watershed that splits the mask into one region per cell.

Part of the standalone Hub model: the network needs only torch; the watershed imports OpenCV on first use.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class AttentionGate(nn.Module):
    """Additive attention gate: weights the skip connection ``x`` by a [0, 1] map computed from ``x`` and the
    decoder signal ``gate`` (same spatial size)."""

    def __init__(self, gate_channels: int, skip_channels: int, inner_channels: int):
        super().__init__()
        self.gate_proj = nn.Sequential(nn.Conv2d(gate_channels, inner_channels, 1), nn.BatchNorm2d(inner_channels))
        self.skip_proj = nn.Sequential(nn.Conv2d(skip_channels, inner_channels, 1), nn.BatchNorm2d(inner_channels))
        self.psi = nn.Sequential(nn.Conv2d(inner_channels, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        weights = self.psi(self.relu(self.gate_proj(gate) + self.skip_proj(skip)))
        return skip * weights


class AttentionUNet(nn.Module):
    """U-Net with attention gates on every skip connection; ``forward`` returns mask LOGITS (N, 1, H, W).

    ``widths`` are the channels of the encoder levels, the last one being the bottleneck; the input side
    must be divisible by ``2 ** (len(widths) - 1)``. Use :meth:`predict` for sigmoid probabilities.
    """

    def __init__(self, widths: Sequence[int], in_channels: int = 3):
        super().__init__()
        widths = [int(w) for w in widths]
        self.encoders = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.encoders.append(ConvBlock(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(2)
        self.upsamplers = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(len(widths) - 1)):
            width = widths[level]
            self.upsamplers.append(nn.ConvTranspose2d(widths[level + 1], width, kernel_size=2, stride=2))
            self.gates.append(AttentionGate(width, width, max(width // 2, 1)))
            self.decoders.append(ConvBlock(2 * width, width))
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for index, encoder in enumerate(self.encoders):
            x = encoder(x if index == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for upsample, gate, decoder in zip(self.upsamplers, self.gates, self.decoders):
            x = upsample(x)
            skip = skips.pop()
            x = decoder(torch.cat([gate(x, skip), x], dim=1))
        return self.head(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Cell probabilities (N, 1, H, W) in [0, 1]."""
        return torch.sigmoid(self(x))


def split_cells(
    mask: np.ndarray,
    image: Optional[np.ndarray] = None,
    *,
    peak_ratio: float = 0.7,
    min_area: int = 1,
) -> tuple[np.ndarray, list[dict]]:
    """Split a binary cell mask into one integer label per cell with a marker-based watershed.

    Seeds are the pixels whose distance to the background exceeds ``peak_ratio`` times the largest distance
    of their connected component, so two touching round cells (one distance peak each) get two seeds. The
    watershed (OpenCV) floods ``image`` (H x W x 3 uint8 RGB; without one, the inverted distance map) from
    the seeds, one connected component at a time; pixels outside the mask, and the one-pixel watershed lines
    between touching cells, stay 0. Regions under ``min_area`` pixels are dropped.

    Returns ``(labels, cells)``: an int32 label map (0 = background, cells 1..n) and, per cell, a dict with
    ``label``, ``box`` (x0, y0, x1, y1; x1/y1 exclusive), ``area`` and ``centroid`` (x, y).
    """
    import cv2

    binary = (np.asarray(mask) > 0).astype(np.uint8)
    if binary.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {binary.shape}")
    labels = np.zeros(binary.shape, dtype=np.int32)
    if not binary.any():
        return labels, []
    distance = cv2.distanceTransform(binary, cv2.DIST_L2, 5)
    if image is None:
        relief = 255 - cv2.normalize(distance, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        landscape = cv2.merge([relief, relief, relief])
    else:
        landscape = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR)
        if landscape.shape[:2] != binary.shape:
            raise ValueError(f"image {landscape.shape[:2]} and mask {binary.shape} differ in size")

    # One watershed per connected component (cropped to its box), so that a flood can never cross the
    # background into a neighbouring component.
    flooded = np.zeros(binary.shape, dtype=np.int32)
    n_components, components, boxes, _ = cv2.connectedComponentsWithStats(binary)
    next_label = 1
    for component in range(1, n_components):
        x, y, width, height = (int(v) for v in boxes[component, :4])
        window = (slice(max(y - 1, 0), y + height + 1), slice(max(x - 1, 0), x + width + 1))
        inside = components[window] == component
        local_distance = np.where(inside, distance[window], 0.0)
        seeds = inside & (local_distance > peak_ratio * local_distance.max())
        n_seeds, markers = cv2.connectedComponents(seeds.astype(np.uint8))
        if n_seeds > 2:
            markers = cv2.watershed(np.ascontiguousarray(landscape[window]), markers.astype(np.int32))
        else:
            markers = inside.astype(np.int32)
        keep = inside & (markers > 0)
        flooded[window][keep] = markers[keep] + next_label - 1
        next_label += max(n_seeds - 1, 1)

    cells = []
    for seed_label in range(1, next_label):
        region = flooded == seed_label
        area = int(region.sum())
        if area < min_area:
            continue
        rows, cols = np.nonzero(region)
        label = len(cells) + 1
        labels[region] = label
        cells.append(
            {
                "label": label,
                "box": (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1),
                "area": area,
                "centroid": (float(cols.mean()), float(rows.mean())),
            }
        )
    return labels, cells


__all__ = ["AttentionGate", "AttentionUNet", "ConvBlock", "split_cells"]
