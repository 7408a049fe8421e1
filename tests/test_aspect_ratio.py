"""Shown images keep their aspect ratio: the model sees a square (both processors squash the whole image), but the
Explain overlay, the Pipeline phases and the CLI's "original" panel show a 2:1 image as 2:1.

Tiny untrained models (EfficientNet-SE ``test_efficientnet``, HybridCN-NAS lite) saved here; the browser checks of
the rendered boxes are in ``test_app_browser.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: A 2:1 picture in a colour no heatmap blend produces: magenta, with a darker square so that it is not flat.
WIDTH, HEIGHT = 160, 80


def wide_image(path: Path) -> Path:
    array = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    array[...] = (255, 0, 255)
    array[20:60, 20:60] = (120, 0, 120)
    Image.fromarray(array).save(path)
    return path


def ratio(size: tuple[int, int]) -> float:
    width, height = size
    return width / height


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor
    from leuk.models.hybridcn_nas import HybridCNNASImageProcessor

    root = tmp_path_factory.mktemp("aspect")
    torch.manual_seed(0)
    out = {}
    for key, preset, processor_class in (("cell", "efficientnet-se-test", EfficientNetSEImageProcessor),
                                         ("smear", "hybridcn-nas-lite", HybridCNNASImageProcessor)):
        model = create_model(preset)
        model.save_pretrained(root / preset)
        processor_class.from_model_config(model.config).save_pretrained(root / preset)
        out[key] = root / preset
    out["image"] = wide_image(root / "wide.png")
    return out


def test_restore_aspect_stretches_the_square_back():
    from leuk.explain import restore_aspect

    square = np.zeros((64, 64, 3), np.uint8)
    assert restore_aspect(square, (200, 100)).shape == (64, 128, 3)  # the shorter side keeps its length
    assert restore_aspect(square, (100, 300)).shape == (192, 64, 3)
    assert restore_aspect(square, (50, 50)).shape == (64, 64, 3)
    labels = np.zeros((4, 4, 3), np.uint8)
    labels[:, 2:] = 255
    assert set(np.unique(restore_aspect(labels, (8, 4), nearest=True))) == {0, 255}


def test_explain_overlay_and_pipeline_phases_keep_the_aspect_ratio(folders):
    from leuk import serving
    from leuk.serving.explanations import DISPLAY_SIZE

    registry = serving.ModelRegistry([str(folders["cell"]), str(folders["smear"])], device="cpu")
    result = serving.explain_image(folders["image"], str(folders["cell"]), method="gradcam", registry=registry)
    assert ratio(result.overlay.size) == pytest.approx(2.0, abs=0.02)
    assert ratio(result.model_input.size) == pytest.approx(2.0, abs=0.02)
    assert min(result.overlay.size) >= DISPLAY_SIZE

    stages = serving.pipeline_stages(folders["image"], str(folders["smear"]), registry=registry)
    assert stages.gallery, "no phase pictures"
    for picture, caption in stages.gallery:
        assert ratio(picture.size) == pytest.approx(2.0, abs=0.02), caption


def test_cli_original_panel_keeps_the_aspect_ratio(folders, tmp_path):
    from leuk.cli import main

    out = tmp_path / "map.png"
    assert main(["explain", "--model", str(folders["cell"]), str(folders["image"]), "--out", str(out),
                 "--no-curves", "--faithfulness-steps", "2", "--device", "cpu"]) == 0
    picture = np.asarray(Image.open(out).convert("RGB")).astype(int)
    # the "original" panel is the only magenta in the figure (each overlay blends a heatmap into it)
    magenta = (picture[..., 0] > 200) & (picture[..., 1] < 60) & (picture[..., 2] > 200)
    rows, columns = np.nonzero(magenta)
    assert rows.size > 100
    drawn = (columns.max() - columns.min() + 1, rows.max() - rows.min() + 1)
    assert ratio(drawn) == pytest.approx(2.0, rel=0.05), drawn
