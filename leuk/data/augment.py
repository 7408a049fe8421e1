"""Training augmentation on float NCHW batches in [0, 1], on CPU or GPU, with per-sample random parameters
(:class:`TrainAugment`), and the one batch-level flip/quarter-turn of paired tensors (:func:`flip_rotate`: an
image batch and its masks, as the segmenter and the HybridCN-NAS branches train).

All random numbers come from one :class:`torch.Generator` on the CPU (a fixed number of draws per call), so a
seeded augmenter gives the same batch on any device. Stain jitter works in HED space with the Ruifrok-Johnston
matrix, scaled as scikit-image's ``rgb2hed``/``hed2rgb`` do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DIHEDRAL_DRAWS", "HED_FROM_RGB", "RGB_FROM_HED", "TrainAugment", "apply_dihedral", "dihedral_draw",
           "flip_rotate", "hed_to_rgb", "rgb_to_hed"]

#: Ruifrok & Johnston stain vectors (haematoxylin, eosin, DAB) as rows, in optical density per RGB channel.
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
_LOG_FLOOR = math.log(1e-6)  # scikit-image's scale: concentration 1 is an optical density of ln(1e6)
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def dihedral_draw(generator: torch.Generator | None = None) -> tuple[bool, bool, int]:
    """The three draws of :func:`flip_rotate`, in its order: ``(horizontal flip, vertical flip, quarter turns)``."""
    horizontal = torch.rand(1, generator=generator).item() < 0.5
    vertical = torch.rand(1, generator=generator).item() < 0.5
    turns = int(torch.randint(0, 4, (1,), generator=generator))
    return horizontal, vertical, turns


#: every outcome of :func:`dihedral_draw`, in a fixed order (16 draws; the 8 symmetries of a square, each twice)
DIHEDRAL_DRAWS: tuple[tuple[bool, bool, int], ...] = tuple(
    (h, v, t) for h in (False, True) for v in (False, True) for t in range(4))


def apply_dihedral(tensors: tuple[torch.Tensor, ...], draw: tuple[bool, bool, int]) -> tuple[torch.Tensor, ...]:
    """Every tensor flipped and turned as ``draw`` (one of :data:`DIHEDRAL_DRAWS`) says."""
    horizontal, vertical, turns = draw
    if horizontal:
        tensors = tuple(t.flip(-1) for t in tensors)
    if vertical:
        tensors = tuple(t.flip(-2) for t in tensors)
    return tuple(t.rot90(turns, (-2, -1)) for t in tensors)


def flip_rotate(*tensors: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """The same random flips and quarter turn for every tensor (``... x H x W``; an image batch and its masks).

    Three draws from ``generator`` (:func:`dihedral_draw`), in this order: a horizontal flip (probability 0.5), a
    vertical flip (0.5), then 0-3 quarter turns; one outcome for the whole call, so every tensor (and every sample
    of a batch) moves the same way. Square tensors keep their shape; a non-square one swaps height and width on odd
    turns.
    """
    return apply_dihedral(tensors, dihedral_draw(generator))


def rgb_to_hed(rgb: torch.Tensor) -> torch.Tensor:
    """HED concentrations of an ``N x 3 x H x W`` RGB batch in [0, 1] (scikit-image's scaling).

    Unlike scikit-image, negative concentrations are kept so that :func:`hed_to_rgb` inverts this exactly
    (a pure black or saturated pixel survives the round trip).
    """
    od = torch.log(rgb.clamp_min(1e-6)) / _LOG_FLOOR
    return torch.einsum("nchw,cd->ndhw", od, HED_FROM_RGB.to(rgb.device, rgb.dtype))


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] of an ``N x 3 x H x W`` batch of HED concentrations (inverse of :func:`rgb_to_hed`)."""
    od = torch.einsum("ndhw,dc->nchw", hed, RGB_FROM_HED.to(hed.device, hed.dtype))
    return torch.exp(od * _LOG_FLOOR).clamp(0.0, 1.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = _GRAY_WEIGHTS
    return (r * x[:, 0] + g * x[:, 1] + b * x[:, 2]).unsqueeze(1)


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    kernels = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    return kernels / kernels.sum(dim=1, keepdim=True)


class TrainAugment(nn.Module):
    """Random flips, 90-degree and small rotations, resized crops, colour and HED stain jitter and blur.

    Each operation has a probability (``*_p`` or the flip/rot90 argument itself) and a strength; a strength or
    probability of 0 switches it off. Operations run in this order: flips, 90-degree rotation, one affine
    resample for the small rotation and the random resized crop, colour jitter, HED jitter, Gaussian blur.

    Args:
        hflip, vflip: probability of a horizontal / vertical flip.
        rot90: probability of a rotation by 90, 180 or 270 degrees (square images only).
        rotate_degrees, rotate_p: rotation by an angle uniform in +-``rotate_degrees``, with probability ``rotate_p``.
        crop_p, crop_scale, crop_ratio: random resized crop (area fraction and aspect-ratio ranges), resized back
            to the input size.
        brightness, contrast, saturation, color_p: colour-jitter factors uniform in ``1 +- strength``.
        hed_alpha, hed_beta, hed_p: stain jitter ``c * U(1 +- alpha) + U(+-beta)`` per HED channel (concentrations
            in scikit-image units: 1 is an optical density of ln(1e6), so 0.01 is an OD of about 0.14).
        blur_p, blur_sigma: Gaussian blur with sigma uniform in ``blur_sigma`` (pixels).
        padding_mode: how :func:`torch.nn.functional.grid_sample` fills pixels rotated in from outside.
        seed: seed of the augmenter's own CPU generator (None: torch's global generator).

    In ``eval()`` mode the module returns its input unchanged.
    """

    def __init__(
        self,
        *,
        hflip: float = 0.5,
        vflip: float = 0.0,
        rot90: float = 0.0,
        rotate_degrees: float = 10.0,
        rotate_p: float = 1.0,
        crop_p: float = 0.0,
        crop_scale: tuple[float, float] = (0.7, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        brightness: float = 0.1,
        contrast: float = 0.1,
        saturation: float = 0.0,
        color_p: float = 1.0,
        hed_alpha: float = 0.0,
        hed_beta: float = 0.0,
        hed_p: float = 1.0,
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 1.0),
        padding_mode: str = "reflection",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, p in {"hflip": hflip, "vflip": vflip, "rot90": rot90, "rotate_p": rotate_p, "crop_p": crop_p,
                        "color_p": color_p, "hed_p": hed_p, "blur_p": blur_p}.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability and must lie in [0, 1], got {p}")
        if min(rotate_degrees, brightness, contrast, saturation, hed_alpha, hed_beta) < 0:
            raise ValueError("augmentation strengths must not be negative")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1 or not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1 and crop_ratio 0 < low <= high")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {blur_sigma}")
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90
        self.rotate_degrees, self.rotate_p = rotate_degrees, rotate_p
        self.crop_p, self.crop_scale, self.crop_ratio = crop_p, tuple(crop_scale), tuple(crop_ratio)
        self.brightness, self.contrast, self.saturation, self.color_p = brightness, contrast, saturation, color_p
        self.hed_alpha, self.hed_beta, self.hed_p = hed_alpha, hed_beta, hed_p
        self.blur_p, self.blur_sigma = blur_p, tuple(blur_sigma)
        self.padding_mode = padding_mode
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    @classmethod
    def paper(cls, *, seed: int | None = None, **overrides) -> "TrainAugment":
        """The EfficientNet-SE paper's set (horizontal flip, +-10 degrees, brightness/contrast 0.1) plus the
        natural cell ones: vertical flip, 90-degree rotations, light HED stain jitter and occasional blur."""
        settings = dict(
            hflip=0.5, vflip=0.5, rot90=0.5, rotate_degrees=10.0, rotate_p=1.0, brightness=0.1, contrast=0.1,
            hed_alpha=0.05, hed_beta=0.01, hed_p=0.5, blur_p=0.2, blur_sigma=(0.1, 1.0),
        )
        settings.update(overrides)
        return cls(seed=seed, **settings)

    @classmethod
    def strong(cls, *, seed: int | None = None, **overrides) -> "TrainAugment":
        """:meth:`paper` with stronger colour and stain jitter, resized crops and blur: for few subjects, where
        a network would otherwise learn each subject's stain and scanner signature instead of the class."""
        settings = dict(
            brightness=0.2, contrast=0.2, saturation=0.15, hed_alpha=0.15, hed_beta=0.03, hed_p=0.8,
            crop_p=0.5, crop_scale=(0.75, 1.0), blur_p=0.3, blur_sigma=(0.1, 1.2), padding_mode="zeros",
        )
        settings.update(overrides)
        return cls.paper(seed=seed, **settings)

    def extra_repr(self) -> str:
        return (
            f"hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90}, rotate=+-{self.rotate_degrees}deg "
            f"p={self.rotate_p}, crop_p={self.crop_p} scale={self.crop_scale}, color=({self.brightness}, "
            f"{self.contrast}, {self.saturation}) p={self.color_p}, hed=({self.hed_alpha}, {self.hed_beta}) "
            f"p={self.hed_p}, blur_p={self.blur_p} sigma={self.blur_sigma}"
        )

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a float ``N x C x H x W`` batch in [0, 1]; ``generator`` overrides the module's own."""
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"TrainAugment expects a float N x C x H x W batch, got {x.dtype} {tuple(x.shape)}")
        if not self.training or x.shape[0] == 0:
            return x
        n, channels, height, width = x.shape
        if self.rot90 > 0 and height != width:
            raise ValueError(f"90-degree rotations need square images, got {height}x{width}")
        needs_colour = self.saturation > 0 or (self.hed_p > 0 and (self.hed_alpha > 0 or self.hed_beta > 0))
        if channels != 3 and needs_colour:
            raise ValueError(f"saturation and HED jitter need 3-channel RGB batches, got {channels} channels")
        draws = self._draw(n, generator if generator is not None else self.generator)
        draws = {key: value.to(x.device) for key, value in draws.items()}
        out_dtype = x.dtype
        x = x.float()

        x = torch.where(draws["hflip"][:, None, None, None], x.flip(-1), x)
        x = torch.where(draws["vflip"][:, None, None, None], x.flip(-2), x)
        if self.rot90 > 0:
            x = x.clone()
            for turns in (1, 2, 3):
                chosen = draws["rot90"] & (draws["turns"] == turns)
                if chosen.any():
                    x[chosen] = torch.rot90(x[chosen], turns, dims=(-2, -1))
        x = self._affine(x, draws)
        x = self._colour(x, draws)
        x = self._stain(x, draws)
        x = self._blur(x, draws)
        return x.clamp(0.0, 1.0).to(out_dtype)

    def _draw(self, n: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """Every random number of one call, always the same number of draws (CPU, float64)."""
        uniform = lambda *shape: torch.rand(n, *shape, generator=generator, dtype=torch.float64)  # noqa: E731
        draws = {
            "hflip": uniform() < self.hflip,
            "vflip": uniform() < self.vflip,
            "rot90": uniform() < self.rot90,
            "turns": torch.randint(1, 4, (n,), generator=generator),
            "rotate": uniform() < self.rotate_p,
            "angle": (uniform() * 2 - 1) * math.radians(self.rotate_degrees),
            "crop": uniform() < self.crop_p,
            "crop_area": self.crop_scale[0] + uniform() * (self.crop_scale[1] - self.crop_scale[0]),
            "crop_log_ratio": math.log(self.crop_ratio[0])
            + uniform() * (math.log(self.crop_ratio[1]) - math.log(self.crop_ratio[0])),
            "crop_centre": uniform(2) * 2 - 1,
            "colour": uniform() < self.color_p,
            "colour_factors": 1 + (uniform(3) * 2 - 1) * torch.tensor([self.brightness, self.contrast, self.saturation],
                                                                     dtype=torch.float64),
            "hed": uniform() < self.hed_p,
            "hed_alpha": 1 + (uniform(3) * 2 - 1) * self.hed_alpha,
            "hed_beta": (uniform(3) * 2 - 1) * self.hed_beta,
            "blur": uniform() < self.blur_p,
            "blur_sigma": self.blur_sigma[0] + uniform() * (self.blur_sigma[1] - self.blur_sigma[0]),
        }
        return draws

    def _affine(self, x: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        angle = torch.where(draws["rotate"], draws["angle"], torch.zeros_like(draws["angle"]))
        crop = draws["crop"]
        selected = (angle != 0) | crop
        if not selected.any():
            return x
        ratio = torch.exp(draws["crop_log_ratio"])
        width = torch.where(crop, torch.sqrt(draws["crop_area"] * ratio).clamp(max=1.0), torch.ones_like(ratio))
        height = torch.where(crop, torch.sqrt(draws["crop_area"] / ratio).clamp(max=1.0), torch.ones_like(ratio))
        centre_x = draws["crop_centre"][:, 0] * (1 - width)
        centre_y = draws["crop_centre"][:, 1] * (1 - height)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # Output coordinates (normalised to [-1, 1]) map to input ones by rotation(angle) @ diag(width, height) + centre.
        theta = torch.stack(
            [torch.stack([width * cos, -height * sin, centre_x], 1), torch.stack([width * sin, height * cos, centre_y], 1)],
            1,
        )[selected].to(x.dtype)
        part = x[selected]
        grid = F.affine_grid(theta, list(part.shape), align_corners=False)
        x = x.clone()
        x[selected] = F.grid_sample(part, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)
        return x

    def _colour(self, x: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.color_p == 0 or not (self.brightness or self.contrast or self.saturation):
            return x
        factors = torch.where(draws["colour"][:, None], draws["colour_factors"], torch.ones_like(draws["colour_factors"]))
        factors = factors.to(x.dtype)[:, :, None, None, None]
        brightness, contrast, saturation = factors[:, 0], factors[:, 1], factors[:, 2]
        x = (x * brightness).clamp(0.0, 1.0)
        if self.contrast:
            mean = (_gray(x) if x.shape[1] == 3 else x.mean(1, keepdim=True)).mean(dim=(-2, -1), keepdim=True)
            x = ((x - mean) * contrast + mean).clamp(0.0, 1.0)
        if self.saturation:
            gray = _gray(x)
            x = ((x - gray) * saturation + gray).clamp(0.0, 1.0)
        return x

    def _stain(self, x: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        selected = draws["hed"]
        if not (self.hed_alpha or self.hed_beta) or not selected.any():
            return x
        part = x[selected]
        alpha = draws["hed_alpha"][selected].to(x.dtype)[:, :, None, None]
        beta = draws["hed_beta"][selected].to(x.dtype)[:, :, None, None]
        x = x.clone()
        x[selected] = hed_to_rgb(rgb_to_hed(part) * alpha + beta)
        return x

    def _blur(self, x: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        selected = draws["blur"]
        if self.blur_p == 0 or not selected.any():
            return x
        radius = max(1, math.ceil(3 * self.blur_sigma[1]))
        part = x[selected]
        count, channels, height, width = part.shape
        if radius >= min(height, width):
            radius = min(height, width) - 1
        kernels = _gaussian_kernels(draws["blur_sigma"][selected].to(x.dtype), radius)
        kernels = kernels.repeat_interleave(channels, dim=0)  # one kernel per (sample, channel)
        flat = part.reshape(1, count * channels, height, width)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernels[:, None, None, :], groups=count * channels)
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernels[:, None, :, None], groups=count * channels)
        x = x.clone()
        x[selected] = flat.reshape(count, channels, height, width)
        return x
