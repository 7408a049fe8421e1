"""Phase 2 of HybridCN-NAS: an Attention U-Net (Oktay et al., 2018) for white-cell masks, and a marker-based
watershed, confined to the mask, that splits it into one region per cell.

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
    seeds: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, list[dict]]:
    """Split a binary cell mask into one integer label per cell with a seeded watershed confined to the mask.

    Seeds are the pixels whose distance to the background exceeds ``peak_ratio`` times the largest distance
    of their connected component, so two touching round cells (one distance peak each) get two seeds. The
    seeds flood the distance map by immersion, inside the mask only: from the largest distance down, at each
    level every cell grows one neighbour ring at a time into the mask pixels at least that far from the
    background, so two fronts meet on the saddle between two touching cells and no flood runs round through
    the background into a neighbouring cell (two equal touching discs get equal halves). Every mask pixel
    goes to a cell; pixels outside the mask stay 0. Regions under ``min_area`` pixels are dropped.

    ``seeds`` (bool, the mask's shape) replaces those seeds when given: each connected group of seed pixels inside
    the mask starts one cell (a mask component without a seed gets none and is dropped).

    ``image`` (H x W x 3 RGB, the picture the mask was found on) is only checked against the mask's size:
    the flood follows the distance map, not the colours, because a nucleus edge is a stronger colour ridge
    than the line between two touching cells and would steer a colour flood.

    Returns ``(labels, cells)``: an int32 label map (0 = background, cells 1..n) and, per cell, a dict with
    ``label``, ``box`` (x0, y0, x1, y1; x1/y1 exclusive), ``area`` and ``centroid`` (x, y).
    """
    import cv2

    binary = np.asarray(mask) > 0
    if binary.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {binary.shape}")
    if image is not None and np.asarray(image).shape[:2] != binary.shape:
        raise ValueError(f"image {np.asarray(image).shape[:2]} and mask {binary.shape} differ in size")
    labels = np.zeros(binary.shape, dtype=np.int32)
    if not binary.any():
        return labels, []
    if binary.all():  # no background pixel: the picture's edge is the background (else every distance is infinite)
        distance = cv2.distanceTransform(np.pad(binary, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    else:
        distance = cv2.distanceTransform(binary.astype(np.uint8), cv2.DIST_L2, 5)
    count, components = cv2.connectedComponents(binary.astype(np.uint8), connectivity=4)
    peaks = np.zeros(count, dtype=np.float32)
    np.maximum.at(peaks, components.ravel(), distance.ravel())
    if seeds is None:
        seeds = binary & (distance > peak_ratio * peaks[components])
    else:
        seeds = binary & (np.asarray(seeds) > 0)
    _, flooded = cv2.connectedComponents(seeds.astype(np.uint8), connectivity=4)
    flooded = flooded.astype(np.int32)
    for level in np.arange(np.floor(float(distance.max())), -1.0, -1.0):
        free = binary & (distance >= level) & (flooded == 0)
        while free.any():
            grown = _grow(flooded)
            new = free & (grown > 0)
            if not new.any():
                break
            flooded[new] = grown[new]
            free &= ~new

    cells = []
    for seed_label in range(1, int(flooded.max()) + 1):
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


def _grow(labels: np.ndarray) -> np.ndarray:
    """Each pixel's largest label among itself and its four neighbours (a dilation by a cross)."""
    grown = labels.copy()
    np.maximum(grown[1:], labels[:-1], out=grown[1:])
    np.maximum(grown[:-1], labels[1:], out=grown[:-1])
    np.maximum(grown[:, 1:], labels[:, :-1], out=grown[:, 1:])
    np.maximum(grown[:, :-1], labels[:, 1:], out=grown[:, :-1])
    return grown


__all__ = ["AttentionGate", "AttentionUNet", "ConvBlock", "split_cells"]
