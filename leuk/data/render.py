"""The renderer behind :mod:`leuk.data.synthetic`: one stained white cell (:func:`render_cell`) or one smear
field (:func:`render_smear`) drawn in optical density (Beer-Lambert), with the morphology of its class, the
latent "blastness" that makes the classes overlap, and the patient's :class:`StainSignature`. Seeded
:class:`numpy.random.Generator` in, uint8 RGB (and masks) out; nothing is written to disk here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

__all__ = [
    "ARIA_CLASSES",
    "ARIA_MALIGNANT_SUBTYPES",
    "CELL_BLASTNESS_SD",
    "CAMERA_NOISE_SD",
    "CLASS_EVIDENCE",
    "CNMC_CLASSES",
    "RenderedCell",
    "StainSignature",
    "check_class_evidence",
    "render_cell",
    "render_smear",
]

CNMC_CLASSES = ("hem", "all")
ARIA_CLASSES = ("Benign", "Early", "Pre", "Pro")
ARIA_MALIGNANT_SUBTYPES = ("Early", "Pre", "Pro")

# Optical density per unit stain concentration, in R, G, B order (exp(-OD) is the transmitted light).
_NUCLEUS_OD = np.array([0.84, 1.45, 0.53], np.float32)  # haematoxylin/azure purple
_CYTOPLASM_OD = np.array([0.42, 0.22, 0.08], np.float32)  # pale basophilic blue
_RED_CELL_OD = np.array([0.12, 0.55, 0.42], np.float32)  # eosin pink
_PLASMA_OD = np.array([0.05, 0.08, 0.045], np.float32)  # light background of a smear

# Difficulty knobs (tuned with train/check_synthetic_difficulty.py): spread of the latent blastness of one
# cell around its class mean (+1 ALL, -1 normal); the patient's offset is leuk.data.synthetic's.
CELL_BLASTNESS_SD = 0.5
CAMERA_NOISE_SD = 0.012

# Where the class shows: "morphology" (every feature of the cell) or "nucleus" (only inside the nucleus).
CLASS_EVIDENCE = ("morphology", "nucleus")


@dataclass(frozen=True)
class StainSignature:
    """How one patient's slides look: stain batch, illumination and focus.

    ``hue_shift`` in degrees, ``saturation`` and ``brightness`` multiplicative, ``tint`` a per-channel
    white-balance factor offset (R, G, B), ``blur_sigma`` in pixels of a 96-pixel cell (scaled with size).
    The default instance changes nothing.
    """

    hue_shift: float = 0.0
    saturation: float = 1.0
    brightness: float = 1.0
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0)
    blur_sigma: float = 0.0

    @classmethod
    def random(cls, rng: np.random.Generator, strength: float) -> "StainSignature":
        """A random signature; ``strength`` 0 gives the neutral one, 1 a strong batch effect."""
        if strength <= 0:
            return cls()
        return cls(
            hue_shift=float(rng.normal(0.0, 20.0 * strength)),
            saturation=float(np.exp(rng.normal(0.0, 0.4 * strength))),
            brightness=float(np.exp(rng.normal(0.0, 0.15 * strength))),
            tint=tuple(float(v) for v in rng.normal(0.0, 0.1 * strength, 3)),
            blur_sigma=float(abs(rng.normal(0.0, 1.6 * strength))),
        )

    def jittered(self, rng: np.random.Generator, strength: float) -> "StainSignature":
        """This signature with a small per-image variation (a fifth of a patient-level spread)."""
        delta = StainSignature.random(rng, 0.2 * strength)
        return replace(
            self,
            hue_shift=self.hue_shift + delta.hue_shift,
            saturation=self.saturation * delta.saturation,
            brightness=self.brightness * delta.brightness,
            tint=tuple(a + b for a, b in zip(self.tint, delta.tint)),
            blur_sigma=max(0.0, self.blur_sigma + delta.blur_sigma * (1 if rng.random() < 0.5 else -1)),
        )

    def apply(self, rgb: np.ndarray, *, pixel_scale: float = 1.0) -> np.ndarray:
        """Apply to a float32 ``H x W x 3`` RGB image in [0, 1]; returns a new array in [0, 1]."""
        out = np.ascontiguousarray(rgb, dtype=np.float32)
        if self.hue_shift or self.saturation != 1.0 or self.brightness != 1.0:
            hsv = cv2.cvtColor(np.clip(out, 0.0, 1.0), cv2.COLOR_RGB2HSV)  # float: H in [0, 360)
            hsv[..., 0] = np.mod(hsv[..., 0] + self.hue_shift, 360.0)
            hsv[..., 1] = np.clip(hsv[..., 1] * self.saturation, 0.0, 1.0)
            hsv[..., 2] *= self.brightness
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if any(self.tint):
            out = out * (1.0 + np.asarray(self.tint, np.float32))
        sigma = self.blur_sigma * pixel_scale
        if sigma > 0.2:
            out = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class RenderedCell:
    """One rendered cell: ``image`` ``H x W x 3`` uint8 and boolean ``cell_mask`` / ``nucleus_mask``."""

    image: np.ndarray
    cell_mask: np.ndarray
    nucleus_mask: np.ndarray


@dataclass(frozen=True)
class _SubtypeModifier:
    size: float = 1.0
    nc_shift: float = 0.0
    nucleoli: float = 1.0
    basophilia: float = 1.0
    irregularity: float = 1.0
    chromatin_grain: float = 1.0


# Subtle differences between the malignant B-lineage subtypes (they overlap on purpose).
_SUBTYPES = {
    None: _SubtypeModifier(),
    "Early": _SubtypeModifier(size=0.95, nc_shift=0.03, nucleoli=0.7, basophilia=1.0),
    "Pre": _SubtypeModifier(size=1.04, nc_shift=-0.07, nucleoli=1.0, basophilia=1.35, irregularity=0.85,
                            chromatin_grain=1.15),
    "Pro": _SubtypeModifier(size=1.11, nc_shift=0.04, nucleoli=1.6, basophilia=0.85, irregularity=1.35,
                            chromatin_grain=0.8),
}


@dataclass(frozen=True)
class _Morphology:
    radius: float
    nc_ratio: float
    cell_irregularity: float
    nucleus_irregularity: float
    nucleus_notch: bool
    chromatin_sigma: float  # texture grain, as a fraction of the nucleus radius
    chromatin_contrast: float
    chromatin_density: float
    nucleoli: int
    nucleolus_visibility: float
    basophilia: float


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def check_class_evidence(class_evidence: str) -> None:
    """Refuse a ``class_evidence`` that is not one of :data:`CLASS_EVIDENCE`."""
    if class_evidence not in CLASS_EVIDENCE:
        raise ValueError(f"class_evidence must be one of {', '.join(CLASS_EVIDENCE)}, got {class_evidence!r}")


def _blastness_position(blastness: float) -> float:
    return float(np.clip((blastness + 1.0) / 2.0, -0.4, 1.4))  # 0: typical normal cell, 1: typical blast


def _draw_morphology(
    rng: np.random.Generator,
    malignant: bool,
    subtype: str | None,
    *,
    base_radius: float,
    blastness_offset: float,
    class_evidence: str = "morphology",
) -> _Morphology:
    blastness = (1.0 if malignant else -1.0) + blastness_offset + rng.normal(0.0, CELL_BLASTNESS_SD)
    t = _blastness_position(blastness)
    mod = _SUBTYPES[subtype]
    # t_cell drives what lies outside the nucleus (size, N:C ratio, outline, cytoplasm); t drives the nucleus.
    t_cell, cell_mod = t, mod
    if class_evidence == "nucleus":  # outside the nucleus every class shares one (two-class mixture) distribution
        t_cell = _blastness_position(float(rng.choice((-1.0, 1.0))) + rng.normal(0.0, CELL_BLASTNESS_SD))
        cell_mod = _SubtypeModifier(nucleoli=mod.nucleoli, irregularity=mod.irregularity,
                                    chromatin_grain=mod.chromatin_grain)
    return _Morphology(
        radius=base_radius * (1.0 + 0.30 * t_cell) * cell_mod.size * float(np.exp(rng.normal(0.0, 0.06))),
        nc_ratio=float(np.clip(_lerp(0.58, 0.80, t_cell) + cell_mod.nc_shift + rng.normal(0.0, 0.04), 0.35, 0.92)),
        cell_irregularity=max(0.0, _lerp(0.012, 0.045, t_cell)) * float(np.exp(rng.normal(0.0, 0.3))),
        nucleus_irregularity=max(0.0, _lerp(0.015, 0.08, t)) * mod.irregularity * float(np.exp(rng.normal(0, 0.3))),
        nucleus_notch=bool(rng.random() < np.clip(_lerp(0.03, 0.35, t) * mod.irregularity, 0.0, 1.0)),
        chromatin_sigma=_lerp(0.11, 0.045, t) * mod.chromatin_grain * float(np.exp(rng.normal(0.0, 0.15))),
        chromatin_contrast=float(np.clip(_lerp(0.42, 0.18, t) * np.exp(rng.normal(0.0, 0.15)), 0.05, 0.8)),
        chromatin_density=_lerp(1.3, 0.85, t) * float(np.exp(rng.normal(0.0, 0.07))),
        nucleoli=int(min(4, rng.poisson(max(0.0, _lerp(0.1, 1.8, t)) * mod.nucleoli))),
        nucleolus_visibility=float(np.clip(_lerp(0.35, 0.85, t) + rng.normal(0.0, 0.1), 0.1, 1.0)),
        basophilia=_lerp(0.75, 1.0, t_cell) * cell_mod.basophilia * float(np.exp(rng.normal(0.0, 0.12))),
    )


def _harmonics(rng: np.random.Generator, amplitude: float, kmax: int = 6):
    orders = np.arange(2, kmax + 1, dtype=np.float32)
    amplitudes = (amplitude * rng.normal(0.0, 1.0, orders.size) / orders**0.7).astype(np.float32)
    phases = rng.uniform(0.0, 2 * np.pi, orders.size).astype(np.float32)
    return orders, amplitudes, phases


def _radial_alpha(dx: np.ndarray, dy: np.ndarray, radius: float, harmonics, notch=None) -> np.ndarray:
    """Anti-aliased coverage of a star-shaped outline r(theta) = radius * (1 + sum of harmonics - notch)."""
    dist = np.hypot(dx, dy)
    direction = (dx + 1j * dy).astype(np.complex64) / np.maximum(dist, 1e-6)  # exp(i theta)
    orders, amplitudes, phases = harmonics
    wobble = np.zeros(dist.shape, np.float32)
    power = direction
    for order in range(2, int(orders[-1]) + 1):  # sum of a_k cos(k theta + phi_k) via powers of exp(i theta)
        power = power * direction
        coefficient = amplitudes[order - 2] * np.exp(1j * phases[order - 2])
        wobble += coefficient.real * power.real - coefficient.imag * power.imag
    boundary = radius * (1.0 + wobble)
    if notch is not None:
        depth, angle, width = notch
        gap = np.angle(direction * np.complex64(np.exp(-1j * angle)))
        boundary -= radius * depth * np.exp(-((gap / width) ** 2))
    return np.clip(boundary - dist + 0.5, 0.0, 1.0).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = rng.standard_normal(shape, dtype=np.float32)
    if sigma > 0.3:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return noise / (float(noise.std()) + 1e-6)


def _cell_layers(rng: np.random.Generator, morph: _Morphology, dx: np.ndarray, dy: np.ndarray):
    """Optical density, cell coverage and nucleus coverage of one cell on a grid of offsets from its centre."""
    shape = np.broadcast_shapes(dx.shape, dy.shape)
    radius = morph.radius
    nucleus_radius = radius * float(np.sqrt(morph.nc_ratio))
    cell_alpha = _radial_alpha(dx, dy, radius, _harmonics(rng, morph.cell_irregularity))

    angle = rng.uniform(0.0, 2 * np.pi)
    shift = rng.uniform(0.0, 0.8) * (radius - nucleus_radius)
    ndx, ndy = dx - float(shift * np.cos(angle)), dy - float(shift * np.sin(angle))
    notch = (rng.uniform(0.12, 0.28), rng.uniform(0.0, 2 * np.pi), rng.uniform(0.25, 0.5)) if morph.nucleus_notch else None
    nucleus_alpha = _radial_alpha(ndx, ndy, nucleus_radius, _harmonics(rng, morph.nucleus_irregularity), notch)
    nucleus_alpha = np.minimum(nucleus_alpha, cell_alpha)

    grain = _smooth_noise(rng, shape, morph.chromatin_sigma * nucleus_radius)
    fine = _smooth_noise(rng, shape, 0.6)
    texture = morph.chromatin_contrast * np.clip(grain, -1.5, 2.5) + 0.06 * fine
    chromatin = morph.chromatin_density * np.exp(texture) * nucleus_alpha
    cytoplasm = morph.basophilia * (0.85 + 0.1 * _smooth_noise(rng, shape, 2.0)) * (cell_alpha - nucleus_alpha)

    for _ in range(morph.nucleoli):
        r = nucleus_radius * rng.uniform(0.0, 0.55)
        phi = rng.uniform(0.0, 2 * np.pi)
        size = nucleus_radius * rng.uniform(0.09, 0.16)
        dist = np.hypot(ndx - float(r * np.cos(phi)), ndy - float(r * np.sin(phi)))
        spot = np.exp(-((dist / size) ** 4)) * nucleus_alpha * morph.nucleolus_visibility
        chromatin *= 1.0 - 0.65 * spot
        cytoplasm += 0.4 * spot

    od = chromatin[..., None] * _NUCLEUS_OD + np.maximum(cytoplasm, 0.0)[..., None] * _CYTOPLASM_OD
    return od.astype(np.float32), cell_alpha, nucleus_alpha


def _parse_label(label: str, subtype: str | None) -> tuple[bool, str | None]:
    """(malignant, subtype) from a C-NMC label (all/hem) or an Aria class name."""
    key = label.strip().lower()
    if key in ("all", "hem", "benign"):
        malignant = key == "all"
    elif key in ("early", "pre", "pro"):
        if subtype is not None and subtype.lower() != key:
            raise ValueError(f"label {label!r} contradicts subtype {subtype!r}")
        malignant, subtype = True, key.capitalize()
    else:
        raise ValueError(f"unknown cell label {label!r}: use one of all, hem, Benign, Early, Pre, Pro")
    if subtype is not None:
        subtype = subtype.capitalize()
        if subtype not in ARIA_MALIGNANT_SUBTYPES:
            raise ValueError(f"unknown subtype {subtype!r}: use one of {', '.join(ARIA_MALIGNANT_SUBTYPES)}")
        if not malignant:
            raise ValueError(f"subtype {subtype!r} needs a malignant label, not {label!r}")
    return malignant, subtype


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def render_cell(
    rng: np.random.Generator,
    label: str,
    size: int,
    stain: StainSignature | None = None,
    *,
    subtype: str | None = None,
    blastness_offset: float = 0.0,
    class_evidence: str = "morphology",
) -> RenderedCell:
    """Render one segmented cell on black, as in C-NMC (``size`` x ``size`` pixels).

    ``label`` is ``"all"``/``"hem"`` (or an Aria class name); ``subtype`` one of ``Early``, ``Pre``, ``Pro``
    for malignant cells. ``stain`` is the patient's signature (None: neutral); ``blastness_offset`` the
    patient's shift of the latent blastness (0 for a typical patient). ``class_evidence`` is ``"morphology"``
    (the class shows everywhere in the cell) or ``"nucleus"`` (only inside the nucleus mask).
    """
    malignant, subtype = _parse_label(label, subtype)
    check_class_evidence(class_evidence)
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    morph = _draw_morphology(rng, malignant, subtype, base_radius=0.25 * size, blastness_offset=blastness_offset,
                             class_evidence=class_evidence)
    morph = replace(morph, radius=min(morph.radius, 0.42 * size))
    cx, cy = (float(v) for v in size / 2.0 - 0.5 + rng.normal(0.0, 0.02 * size, 2))
    dx, dy = _offsets((slice(0, size), slice(0, size)), cx, cy)
    od, cell_alpha, nucleus_alpha = _cell_layers(rng, morph, dx, dy)
    rgb = np.exp(-(od + _PLASMA_OD)) + CAMERA_NOISE_SD * rng.standard_normal(od.shape, dtype=np.float32)
    if stain is not None:
        rgb = stain.apply(rgb, pixel_scale=size / 96.0)
    rgb = np.clip(rgb, 0.0, 1.0) * cell_alpha[..., None]  # segmented onto black, after capture blur
    return RenderedCell(image=_to_uint8(rgb), cell_mask=cell_alpha > 0.5, nucleus_mask=nucleus_alpha > 0.5)


def _window(cx: float, cy: float, reach: float, size: int) -> tuple[slice, slice] | None:
    x0, x1 = max(0, int(np.floor(cx - reach))), min(size, int(np.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(np.floor(cy - reach))), min(size, int(np.ceil(cy + reach)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _offsets(win: tuple[slice, slice], cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Broadcastable column offsets (1 x w) and row offsets (h x 1) of a window from a centre."""
    ys, xs = win
    dx = np.arange(xs.start, xs.stop, dtype=np.float32)[None, :] - np.float32(cx)
    dy = np.arange(ys.start, ys.stop, dtype=np.float32)[:, None] - np.float32(cy)
    return dx, dy


def render_smear(
    rng: np.random.Generator,
    label: str,
    size: int,
    stain: StainSignature | None = None,
    *,
    subtype: str | None = None,
    blastness_offset: float = 0.0,
    white_cells: int | None = None,
    class_evidence: str = "morphology",
) -> tuple[np.ndarray, np.ndarray]:
    """Render a peripheral-smear field as in Aria: 2-5 white cells of one class among many red cells.

    Returns the ``size`` x ``size`` x 3 uint8 image and the boolean white-cell mask. Some white cells touch,
    red cells overlap each other and lie under the white cells. ``class_evidence`` as in :func:`render_cell`.
    """
    malignant, subtype = _parse_label(label, subtype)
    check_class_evidence(class_evidence)
    od = np.broadcast_to(_PLASMA_OD * float(np.exp(rng.normal(0.0, 0.1))), (size, size, 3)).copy()
    red_radius = 0.06 * size
    area_per_cell = np.pi * red_radius**2
    for _ in range(int(rng.integers(int(0.45 * size * size / area_per_cell), int(0.75 * size * size / area_per_cell) + 1))):
        cx, cy = rng.uniform(-red_radius, size + red_radius, 2)
        radius = red_radius * float(np.exp(rng.normal(0.0, 0.08)))
        harmonics = _harmonics(rng, 0.03, kmax=3)
        intensity = float(np.exp(rng.normal(0.0, 0.1)))
        win = _window(cx, cy, radius * 1.15 + 1, size)
        if win is None:
            continue
        dx, dy = _offsets(win, cx, cy)
        alpha = _radial_alpha(dx, dy, radius, harmonics)
        pallor = 1.0 - 0.55 * np.exp(-((np.hypot(dx, dy) / (0.5 * radius)) ** 2))
        od[win] += (alpha * pallor * intensity)[..., None] * _RED_CELL_OD

    mask = np.zeros((size, size), bool)
    placed: list[tuple[float, float, float]] = []
    count = int(rng.integers(2, 6)) if white_cells is None else int(white_cells)
    for _ in range(count):
        morph = _draw_morphology(rng, malignant, subtype, base_radius=0.085 * size, blastness_offset=blastness_offset,
                                 class_evidence=class_evidence)
        radius = morph.radius
        reach = radius * 1.2 + 2
        for _attempt in range(60):
            if placed and rng.random() < 0.35:  # touching a neighbour, as watershed has to split
                ox, oy, orad = placed[int(rng.integers(len(placed)))]
                phi = rng.uniform(0.0, 2 * np.pi)
                gap = 0.97 * (radius + orad)
                cx, cy = ox + gap * np.cos(phi), oy + gap * np.sin(phi)
            else:
                cx, cy = rng.uniform(reach, size - reach, 2)
            inside = reach <= cx <= size - reach and reach <= cy <= size - reach
            if inside and all(np.hypot(cx - x, cy - y) >= 0.95 * (radius + r) for x, y, r in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        win = _window(cx, cy, reach, size)
        dx, dy = _offsets(win, cx, cy)
        cell_od, cell_alpha, _ = _cell_layers(rng, morph, dx, dy)
        od[win] = od[win] * (1.0 - cell_alpha[..., None]) + (cell_od + _PLASMA_OD) * cell_alpha[..., None]
        mask[win] |= cell_alpha > 0.5

    rgb = np.exp(-od) + CAMERA_NOISE_SD * rng.standard_normal(od.shape, dtype=np.float32)
    if stain is not None:
        rgb = stain.apply(rgb, pixel_scale=size / 256.0)
    return _to_uint8(rgb), mask
