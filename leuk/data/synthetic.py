"""Procedurally rendered stained white cells in the exact on-disk layouts of C-NMC 2019 and Aria ALL.

The renderer works in optical density (Beer-Lambert): a haematoxylin-purple nucleus with chromatin texture
and nucleoli, a pale blue cytoplasm and, for smears, pink red cells with central pallor. Morphology follows
haematology texts: ALL lymphoblasts are about 30% larger, with a high nucleus:cytoplasm ratio, fine open
chromatin, visible nucleoli and irregular contours; normal cells / hematogones are smaller, round, with
condensed dark chromatin. Every cell draws a latent "blastness" from its class, shifted by a per-patient
offset, so the classes overlap and a small CNN lands clearly below 100% on unseen patients.

``class_evidence="nucleus"`` keeps the class evidence inside the nucleus (chromatin, nucleoli, nuclear
outline) and draws cell size, nucleus:cytoplasm ratio, cell outline and cytoplasm colour from one distribution
for every class: a model trained on such cells has to look at the nucleus, which makes attribution maps
checkable against the nucleus masks.

Each patient also carries a :class:`StainSignature` (hue, saturation, brightness, tint, blur) whose strength is
``confounding``: it lets an image-level split leak the patient, as in the real data. Output is byte-identical
for identical arguments (seeded :class:`numpy.random.Generator`, PIL writers with fixed settings).
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

__all__ = [
    "ARIA_CLASSES",
    "CLASS_EVIDENCE",
    "CNMC_CLASSES",
    "RenderedCell",
    "StainSignature",
    "render_cell",
    "render_smear",
    "write_aria",
    "write_cnmc",
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
# cell around its class mean (+1 ALL, -1 normal) and spread of a patient's offset of that mean.
CELL_BLASTNESS_SD = 0.5
PATIENT_BLASTNESS_SD = 0.45
CAMERA_NOISE_SD = 0.012

# Shares of the real sets: C-NMC ~60% ALL subjects and ~2:1 ALL:HEM images; Aria 25 benign of 89 patients.
_CNMC_ALL_SUBJECT_SHARE = 0.6
_CNMC_ALL_IMAGE_WEIGHT = 4.0 / 3.0  # per-subject image weight of ALL vs HEM that turns 60/40 subjects into 2:1
_ARIA_BENIGN_PATIENT_SHARE = 25 / 89
_CNMC_CELLS_PER_SMEAR = 3

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


def _check_class_evidence(class_evidence: str) -> None:
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
    _check_class_evidence(class_evidence)
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
    _check_class_evidence(class_evidence)
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


# ----------------------------------------------------------------------------------------------------------
# Dataset writers


def _check_args(
    patients: int, images_per_patient: int, size: int, confounding: float, minimum_patients: int, class_evidence: str
) -> None:
    _check_class_evidence(class_evidence)
    if patients < minimum_patients:
        raise ValueError(f"patients must be at least {minimum_patients}, got {patients}")
    if images_per_patient < 1:
        raise ValueError(f"images_per_patient must be at least 1, got {images_per_patient}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if not 0.0 <= confounding <= 2.0:
        raise ValueError(f"confounding must lie in [0, 2], got {confounding}")


def _prepare(out: Path, trees: Sequence[Path], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {out} is a file, not a folder")
    existing = [tree for tree in trees if tree.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; choose another folder or overwrite it (--overwrite)")
    for tree in existing:
        shutil.rmtree(tree) if tree.is_dir() else tree.unlink()
    out.mkdir(parents=True, exist_ok=True)


MARKER_FILE = "SYNTHETIC.md"


def _write_marker(out: Path, layout: str, **settings) -> None:
    """Say in ``<out>/SYNTHETIC.md`` that the folder holds rendered data, not patient data (no timestamps)."""
    lines = [
        f"# Synthetic {layout} look-alike (not patient data)",
        "",
        "Rendered by `leuk synth` (leuk.data.synthetic) with:",
        "",
        *(f"- {name}: {value}" for name, value in settings.items()),
        "",
    ]
    (out / MARKER_FILE).write_text("\n".join(lines), encoding="utf-8")


def _evidence_setting(class_evidence: str) -> dict[str, str]:
    """The marker line for a non-default class evidence (default folders keep their old, identical marker)."""
    return {} if class_evidence == "morphology" else {"class_evidence": class_evidence}


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainder, at least 1 each)."""
    raw = weights / weights.sum() * (total - len(weights))
    shares = np.floor(raw).astype(int)
    order = np.argsort(-(raw - shares), kind="stable")
    shares[order[: total - len(weights) - shares.sum()]] += 1
    return shares + 1


def _save(image: np.ndarray, path: Path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, **options)


def write_cnmc(
    out: str | Path,
    *,
    patients: int = 12,
    images_per_patient: int = 10,
    size: int = 450,
    seed: int = 0,
    confounding: float = 0.5,
    class_evidence: str = "morphology",
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a synthetic C-NMC 2019 set in the Kaggle layout and return ``out``.

    Images go to ``<out>/C-NMC_Leukemia/training_data/fold_{0,1,2}/{all,hem}/UID_<subject>_<image>_<cell>_<all|hem>.bmp``
    (ALL subjects ``1, 2, ...``, healthy subjects ``H1, H2, ...``; subjects spread over the folds), nucleus
    masks to ``<out>/masks/<same relative path>.png``, the generator settings to ``<out>/SYNTHETIC.md``.
    About 60% of the subjects are ALL; ALL subjects get about 4/3 as many cells as healthy ones, so images
    are about 2:1 ALL:HEM (as in the real set) and the total is exactly ``patients * images_per_patient``.
    ``confounding`` scales the per-patient stain signature; ``class_evidence`` as in :func:`render_cell`.
    An existing tree is replaced only with ``overwrite=True``.
    """
    _check_args(patients, images_per_patient, size, confounding, minimum_patients=2, class_evidence=class_evidence)
    out = Path(out)
    tree, mask_tree = out / "C-NMC_Leukemia", out / "masks" / "C-NMC_Leukemia"
    _prepare(out, [tree, mask_tree], overwrite)

    n_all = int(np.clip(round(_CNMC_ALL_SUBJECT_SHARE * patients), 1, patients - 1))
    labels = ["all"] * n_all + ["hem"] * (patients - n_all)
    weights = np.array([_CNMC_ALL_IMAGE_WEIGHT if label == "all" else 1.0 for label in labels])
    counts = _allocate(patients * images_per_patient, weights)
    patient_seeds = np.random.SeedSequence(seed).spawn(patients)

    bar = tqdm(total=int(counts.sum()), desc="synth C-NMC", unit="img", disable=not progress)
    for index, (label, count, patient_seed) in enumerate(zip(labels, counts, patient_seeds)):
        rng = np.random.default_rng(patient_seed)
        number = index + 1 if label == "all" else index - n_all + 1
        subject = str(number) if label == "all" else f"H{number}"
        fold = f"fold_{(number - 1) % 3}"
        signature = StainSignature.random(rng, confounding)
        offset = float(rng.normal(0.0, PATIENT_BLASTNESS_SD))
        for cell_index in range(int(count)):
            image_no, cell_no = divmod(cell_index, _CNMC_CELLS_PER_SMEAR)
            name = f"UID_{subject}_{image_no + 1}_{cell_no + 1}_{label}.bmp"
            relative = Path("training_data") / fold / label / name
            cell = render_cell(rng, label, size, signature.jittered(rng, confounding), blastness_offset=offset,
                               class_evidence=class_evidence)
            _save(cell.image, tree / relative, format="BMP")
            _save(cell.nucleus_mask.astype(np.uint8) * 255, (mask_tree / relative).with_suffix(".png"), format="PNG")
            bar.update()
    bar.close()
    _write_marker(out, "C-NMC 2019", patients=patients, images_per_patient=images_per_patient, size=size, seed=seed,
                  confounding=confounding, **_evidence_setting(class_evidence))
    return out


def _aria_patient_classes(patients: int) -> list[str]:
    n_benign = int(np.clip(round(_ARIA_BENIGN_PATIENT_SHARE * patients), 1, max(1, patients - 1)))
    classes = ["Benign"] * n_benign
    classes += [ARIA_MALIGNANT_SUBTYPES[i % 3] for i in range(patients - n_benign)]
    return classes


def _aria_file_name(label: str, number: int) -> str:
    return f"WBC-Benign-{number:03d}.jpg" if label == "Benign" else f"WBC-Malignant-{label}-{number:03d}.jpg"


def write_aria(
    out: str | Path,
    *,
    patients: int = 8,
    images_per_patient: int = 6,
    size: int = 256,
    seed: int = 0,
    confounding: float = 0.5,
    class_evidence: str = "morphology",
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a synthetic Aria ALL set and return ``out``.

    Layout: ``Original/<class>/`` smear JPGs named as the public release (``WBC-Benign-001.jpg``,
    ``WBC-Malignant-{Early,Pre,Pro}-001.jpg``, numbered per class in shuffled patient order),
    ``Segmented/<class>/`` the white cells on white, ``Masks/<class>/<stem>.png`` white-cell masks (255),
    ``patients.csv`` (``image``, ``patient_id``, ``label``) and ``SYNTHETIC.md`` (generator settings). About
    28% of the patients are benign (25 of 89 in the real set), each malignant patient has one subtype, and
    every class has a patient when ``patients >= 4``. ``class_evidence`` as in :func:`render_cell`.
    """
    _check_args(patients, images_per_patient, size, confounding, minimum_patients=1, class_evidence=class_evidence)
    out = Path(out)
    trees = [out / "Original", out / "Segmented", out / "Masks", out / "patients.csv"]
    _prepare(out, trees, overwrite)

    classes = _aria_patient_classes(patients)
    root_seed = np.random.SeedSequence(seed)
    patient_seeds = root_seed.spawn(patients)
    order_rng = np.random.default_rng(root_seed.spawn(patients + 1)[-1])
    # Per-class numbering in shuffled order, so that file numbers do not reveal patients.
    slots = [(p, i) for p in range(patients) for i in range(images_per_patient)]
    numbers: dict[tuple[int, int], int] = {}
    for label in ARIA_CLASSES:
        mine = [slot for slot in slots if classes[slot[0]] == label]
        for number, pick in enumerate(order_rng.permutation(len(mine)), start=1):
            numbers[mine[int(pick)]] = number

    rows = []
    bar = tqdm(total=len(slots), desc="synth Aria", unit="img", disable=not progress)
    for patient, (label, patient_seed) in enumerate(zip(classes, patient_seeds)):
        rng = np.random.default_rng(patient_seed)
        patient_id = f"P{patient + 1:03d}"
        signature = StainSignature.random(rng, confounding)
        offset = float(rng.normal(0.0, PATIENT_BLASTNESS_SD))
        for image_index in range(images_per_patient):
            name = _aria_file_name(label, numbers[(patient, image_index)])
            image, mask = render_smear(rng, label, size, signature.jittered(rng, confounding), blastness_offset=offset,
                                         class_evidence=class_evidence)
            segmented = np.where(mask[..., None], image, np.uint8(255))
            _save(image, out / "Original" / label / name, format="JPEG", quality=92)
            _save(segmented, out / "Segmented" / label / name, format="JPEG", quality=92)
            _save(mask.astype(np.uint8) * 255, out / "Masks" / label / f"{Path(name).stem}.png", format="PNG")
            rows.append((f"Original/{label}/{name}", patient_id, label))
            bar.update()
    bar.close()
    with open(out / "patients.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image", "patient_id", "label"])
        writer.writerows(sorted(rows))
    _write_marker(out, "Aria ALL", patients=patients, images_per_patient=images_per_patient, size=size, seed=seed,
                  confounding=confounding, **_evidence_setting(class_evidence))
    return out

