"""A small learned white-cell detector: a network that marks the centre of every white cell of a smear and reads
its box there, on a smear already brought to the red-cell scale (:func:`leuk.serving.detection.working_scale`).

The network (:class:`CellCentreNet`) is a little U-Net: four stride-2 stages, a decoder back to half resolution,
and three maps out at every half-resolution pixel: the logit that a white cell's centre lies there, and the log of
its box width and height in red-cell diameters. Centres are the heatmap's local maxima above a threshold chosen on
the training smears (:func:`decode`). Its input is each smear standardised on its own (every colour channel to mean
0 and spread 1), so nothing is fitted across images and a smear stained a little differently reads alike.

The bundled weights (``assets/cell_detector``) are trained on the box-level reference of real Aria smears by
``train/train_cell_detector.py`` (:mod:`leuk.training.cell_detector`); their metadata
(``cell_detector.json``) records the recipe, the threshold and the cross-validated figures, where every smear was
scored by a detector that never saw its boxes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leuk.errors import LeukError

__all__ = ["CellCentreEnsemble", "CellCentreNet", "Detection", "LoadedCellDetector", "STRIDE", "WIDTHS", "cell_detector_dir", "decode", "has_cell_detector",
           "load_cell_detector", "mean_maps", "members_of", "predict_maps", "save_cell_detector", "standardise"]

#: Output stride of the network: one heatmap pixel per 2 x 2 smear pixels.
STRIDE = 2
#: Channels of the four encoder stages and the bottleneck.
WIDTHS = (24, 32, 64, 96, 128)
#: Side (heatmap pixels) of the window within which a centre must be the highest to count: 5 heatmap pixels are
#: 10 smear pixels, under half the smallest white cell at the red-cell scale.
PEAK_WINDOW = 5
WEIGHTS_FILE = "cell_detector.safetensors"
META_FILE = "cell_detector.json"
#: Environment variable that points at another detector folder.
DETECTOR_ENV = "LEUK_CELL_DETECTOR_DIR"


def cell_detector_dir() -> Path:
    """Folder of the bundled detector (``$LEUK_CELL_DETECTOR_DIR`` or ``<repo>/assets/cell_detector``)."""
    import os

    override = os.environ.get(DETECTOR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[1] / "assets" / "cell_detector"


def _conv(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs),
                         nn.ReLU(inplace=True))


class CellCentreNet(nn.Module):
    """Smear (N, 3, H, W, standardised) -> (N, 3, H/2, W/2): centre logit, log box width and log box height in
    units of ``size_unit`` px (the red-cell diameter of the working scale)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        w = widths
        self.stage1 = nn.Sequential(_conv(3, w[0], 2), _conv(w[0], w[1]))            # 1/2
        self.stage2 = nn.Sequential(_conv(w[1], w[2], 2), _conv(w[2], w[2]))          # 1/4
        self.stage3 = nn.Sequential(_conv(w[2], w[3], 2), _conv(w[3], w[3]))          # 1/8
        self.stage4 = nn.Sequential(_conv(w[3], w[4], 2), _conv(w[4], w[4]), _conv(w[4], w[4]))  # 1/16
        self.up3 = _conv(w[4] + w[3], w[3])
        self.up2 = _conv(w[3] + w[2], w[2])
        self.up1 = _conv(w[2] + w[1], w[1])
        self.head = nn.Sequential(_conv(w[1], w[1]), nn.Conv2d(w[1], 3, 1))
        with torch.no_grad():  # a centre is rare: start the heatmap near 0.1, as CenterNet does
            self.head[-1].bias[0] = -2.19

    @staticmethod
    def _join(low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.interpolate(low, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x1 = self.stage1(pixels)
        x2 = self.stage2(x1)
        x3 = self.stage3(x2)
        x4 = self.stage4(x3)
        y = self.up3(self._join(x4, x3))
        y = self.up2(self._join(y, x2))
        y = self.up1(self._join(y, x1))
        return self.head(y)


def mean_maps(heats: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Several readings of one output as one: ``heats`` (k, ..., h, w) centre probabilities and ``sizes``
    (k, ..., 2, h, w) log box sizes -> (..., 3, h, w), the mean probability as a logit (clamped, so a sure reading
    stays finite) and the mean log sizes. Views of a smear (:func:`predict_maps`) and networks of an ensemble
    (:class:`CellCentreEnsemble`) are averaged by this one rule."""
    heat = heats.mean(0).clamp(1e-6, 1 - 1e-6)
    return torch.cat([torch.logit(heat).unsqueeze(-3), sizes.mean(0)], -3)


class CellCentreEnsemble(nn.Module):
    """Several :class:`CellCentreNet` (trained alike but from different seeds) read as one network: the mean of their
    centre probabilities (returned as a logit, so :func:`decode` and its thresholds read it as they read one network)
    and the mean of their log box sizes. One training of the detector differs from the next by a few smears counted
    right; the mean of several is steadier."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one network")
        self.members = nn.ModuleList(members)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(pixels) for member in self.members])  # (members, N, 3, h, w)
        return mean_maps(outputs[:, :, 0].sigmoid(), outputs[:, :, 1:])


def members_of(net: nn.Module) -> int:
    """How many networks ``net`` averages (1 for a :class:`CellCentreNet`)."""
    return len(net.members) if isinstance(net, CellCentreEnsemble) else 1


def standardise(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (H, W, 3 uint8) as the network reads it: float32 (3, H, W), each channel of this smear to mean 0 and
    standard deviation 1 (per image; nothing fitted)."""
    x = np.asarray(rgb, dtype=np.float32)[..., :3] / 255.0
    flat = x.reshape(-1, 3)
    return ((x - flat.mean(0)) / (flat.std(0) + 1e-3)).transpose(2, 0, 1).copy()


@dataclass(frozen=True)
class Detection:
    """One white cell the network marked: its box (x0, y0, x1, y1, x1/y1 exclusive, clipped to the picture), its
    centre (x, y) and the heatmap's value there."""

    box: tuple[int, int, int, int]
    centre: tuple[float, float]
    score: float


def decode(output: torch.Tensor, threshold: float, size_unit: float, shape: tuple[int, int],
           window: int = PEAK_WINDOW) -> list[Detection]:
    """The detections of one output map (3, h, w): every heatmap pixel above ``threshold`` that is the highest within
    ``window`` heatmap pixels (odd), with the box read at it (``size_unit`` px per unit; ``shape``: the picture's
    height and width, to clip to), strongest first."""
    heat = output[0].sigmoid()
    top = F.max_pool2d(heat[None, None], window, 1, window // 2)[0, 0]
    ys, xs = torch.nonzero((heat == top) & (heat > threshold), as_tuple=True)
    height, width = shape
    found = []
    for y, x in zip(ys.tolist(), xs.tolist()):
        w, h = (output[1:, y, x].exp() * size_unit).tolist()
        cx, cy = (x + 0.5) * STRIDE, (y + 0.5) * STRIDE
        box = (max(0, int(round(cx - w / 2))), max(0, int(round(cy - h / 2))),
               min(width, int(round(cx + w / 2))), min(height, int(round(cy + h / 2))))
        if box[2] > box[0] and box[3] > box[1]:
            found.append(Detection(box=box, centre=(cx, cy), score=float(heat[y, x])))
    return sorted(found, key=lambda d: -d.score)


@torch.no_grad()
def _flipped_maps(net: nn.Module, rgb: np.ndarray, flips: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(heatmap probabilities (h, w), log sizes (2, h, w)) of one view; ``flips``: the mean over the smear as it is
    and mirrored left-right, top-bottom and both."""
    pixels = torch.from_numpy(standardise(rgb))[None]
    if not flips:
        output = net(pixels)[0]
        return output[0].sigmoid(), output[1:]
    views = [(), (3,), (2,), (2, 3)]
    batch = torch.cat([pixels.flip(dims) if dims else pixels for dims in views])
    outputs = net(batch)
    outputs = torch.stack([out.flip([d - 1 for d in dims]) if dims else out for out, dims in zip(outputs, views)])
    return outputs[:, 0].sigmoid().mean(0), outputs[:, 1:].mean(0)


@torch.no_grad()
def predict_maps(net: nn.Module, rgb: np.ndarray, *, flips: bool = False,
                 scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """The network's output (3, h, w) for one smear; ``flips``: the mean over the smear as it is and mirrored
    left-right, top-bottom and both; ``scales``: the mean over the smear resized by each factor, every view's maps
    brought back to the smear's own heatmap grid (bilinear) and its log sizes to the smear's pixels (heatmaps averaged
    as probabilities, then back to a logit; log sizes averaged). Averaging over nearby scales makes the reading less
    sensitive to the exact scale the red-cell ruler set."""
    import cv2

    if not flips and tuple(scales) == (1.0,):  # one view: the network's own output, logits unclamped
        return net(torch.from_numpy(standardise(rgb))[None])[0]
    heats, sizes, grid = [], [], None
    for scale in sorted(scales, key=lambda s: s != 1.0):  # the smear as it is first: its grid is the output's
        view = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale,
                                                   interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        heat, size = _flipped_maps(net, view, flips)
        if grid is None:
            grid = heat.shape if scale == 1.0 else tuple(-(-n // STRIDE) for n in rgb.shape[:2])
        if heat.shape != grid:
            both = F.interpolate(torch.cat([heat[None], size])[None], size=grid, mode="bilinear",
                                 align_corners=False)[0]
            heat, size = both[0], both[1:]
        heats.append(heat)
        sizes.append(size - float(np.log(scale)))
    return mean_maps(torch.stack(heats), torch.stack(sizes))


@dataclass
class LoadedCellDetector:
    """A detector ready to run: the network (eval mode; a :class:`CellCentreNet` or a :class:`CellCentreEnsemble`),
    its threshold and size unit, whether it averages over mirrored copies (``flips``), and its metadata."""

    net: nn.Module
    threshold: float
    size_unit: float
    flips: bool = False
    #: the factors the smear is also read at (:func:`predict_maps`); ``(1.0,)``: as it is only
    scales: tuple[float, ...] = (1.0,)
    meta: dict[str, Any] = field(default_factory=dict)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """The white cells of ``rgb`` (uint8 RGB at the red-cell scale), strongest first."""
        output = predict_maps(self.net, rgb, flips=self.flips, scales=self.scales)
        return decode(output, self.threshold, self.size_unit, rgb.shape[:2])


def save_cell_detector(net: nn.Module, folder: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``net`` (float16, safetensors) and ``meta`` (must hold ``threshold`` and ``size_unit``) to ``folder``;
    the metadata records how many networks it averages (``members``)."""
    from safetensors.torch import save_file

    missing = {"threshold", "size_unit"} - set(meta)
    if missing:
        raise ValueError(f"detector metadata lacks {sorted(missing)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    meta = {"widths": list(WIDTHS), "stride": STRIDE, **meta, "members": members_of(net)}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def has_cell_detector(folder: str | Path | None = None) -> bool:
    """Whether ``folder`` (default :func:`cell_detector_dir`) holds a detector's weights and metadata."""
    path = Path(folder) if folder is not None else cell_detector_dir()
    return (path / WEIGHTS_FILE).is_file() and (path / META_FILE).is_file()


def load_cell_detector(folder: str | Path | None = None) -> LoadedCellDetector:
    """The detector stored in ``folder`` (default :func:`cell_detector_dir`), cached per folder."""
    return _load(str(Path(folder) if folder is not None else cell_detector_dir()))


@lru_cache(maxsize=4)
def _load(folder: str) -> LoadedCellDetector:
    from safetensors.torch import load_file

    path = Path(folder)
    if not has_cell_detector(path):
        raise LeukError(f"no white-cell detector in {path} (train one with train/train_cell_detector.py, "
                        f"or choose the colour rule)")
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    widths = tuple(meta.get("widths", WIDTHS))
    members = int(meta.get("members", 1))
    net = CellCentreNet(widths) if members == 1 else CellCentreEnsemble([CellCentreNet(widths) for _ in range(members)])
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path / WEIGHTS_FILE)).items()})
    return LoadedCellDetector(net=net.eval(), threshold=float(meta["threshold"]), size_unit=float(meta["size_unit"]),
                              flips=bool(meta.get("flips", False)),
                              scales=tuple(float(v) for v in meta.get("scales", (1.0,))), meta=meta)
