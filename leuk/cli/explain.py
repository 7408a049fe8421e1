"""``leuk explain --model M --method NAME|all IMAGE --out FILE.png [--target LABEL]``: attribution maps.

Writes one picture per method (the image as the model saw it | the heatmap overlay, with the target's
probability and the deletion/insertion faithfulness curves): ``FILE.png`` for one method, ``FILE-<method>.png``
for each of several. Prints one line per method with its timing and faithfulness, and the image's verdict
(:mod:`leuk.verdict`: confident, or uncertain with the reasons, e.g. out of distribution) on stderr and in each
picture's title: an attribution map of an image unlike the training data explains a meaningless answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="image file to explain")
    parser.add_argument("--model", default="demo:efficientnet-se",
                        help="Hub id[@revision], save_pretrained folder or demo:<name> (default: %(default)s)")
    parser.add_argument("--method", default="gradcam",
                        help="gradcam, guided_gradcam, integrated_gradients (ig), smoothgrad, occlusion, a "
                             "comma-separated list, or all (default: %(default)s)")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE.png",
                        help="output picture; with several methods FILE-<method>.png each")
    parser.add_argument("--target", metavar="LABEL", help="class to explain: label name or index (default: predicted)")
    parser.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per forward/backward inside IG, SmoothGrad and occlusion")
    parser.add_argument("--compile", action="store_true",
                        help="run IG, SmoothGrad and occlusion through torch.compile: a one-time compile of "
                             "minutes, then faster (worth it for many images in one process)")
    parser.add_argument("--sign", choices=("positive", "absolute", "all"), default="positive",
                        help="which attributions to draw (default: %(default)s)")
    parser.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in [0, 1] (default: %(default)s)")
    parser.add_argument("--cmap", default=None, help="matplotlib colormap (default: turbo, RdBu_r for --sign all)")
    parser.add_argument(
        "--baseline", choices=("black", "blur", "mean", "zero"), default="black",
        help="reference image of Integrated Gradients and Occlusion (default: black, 'no cell' on C-NMC's black "
        "background, which credits the whole cell; blur asks which fine structure, such as chromatin, drove the call)",
    )
    parser.add_argument("--faithfulness-steps", type=int, default=20,
                        help="steps of the deletion/insertion curves (default: %(default)s)")
    parser.add_argument("--faithfulness-baseline", choices=("blur", "black", "mean", "zero"), default="blur",
                        help="what removed pixels become in the deletion/insertion curves (default: %(default)s)")
    parser.add_argument("--no-curves", action="store_true",
                        help="leave the deletion/insertion curves out of the picture")
    parser.add_argument("--branches", action="store_true",
                        help="multi-branch models (HybridCN-NAS): also write FILE-branches.png, Grad-CAM of every "
                             "branch, and print the selected features that drove the call")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write targets, timings and faithfulness as JSON")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def output_paths(out: Path, methods: list[str]) -> dict[str, Path]:
    """``out`` itself for one method; ``<stem>-<method><suffix>`` next to it for several."""
    if len(methods) == 1:
        return {methods[0]: out}
    return {method: out.with_name(f"{out.stem}-{method}{out.suffix}") for method in methods}


def _record(explanation) -> dict:
    faith = explanation.faithfulness
    return {
        "method": explanation.method,
        "target": explanation.target,
        "label": explanation.label,
        "probability": explanation.probability,
        "timings_s": explanation.timings,
        "notes": explanation.notes,
        "faithfulness": None if faith is None else {
            "baseline": faith.baseline,
            "deletion_auc": faith.deletion_auc,
            "insertion_auc": faith.insertion_auc,
            # on the target's log-odds (score None: the curves cannot rank maps on this image)
            "logodds_range": faith.logodds_range,
            "deletion_logodds_auc": faith.deletion_logodds_auc,
            "insertion_logodds_auc": faith.insertion_logodds_auc,
            "score": faith.score,
            "fractions": faith.fractions.tolist(),
            "deletion": faith.deletion.tolist(),
            "insertion": faith.insertion.tolist(),
        },
    }


def run(args: argparse.Namespace) -> int:
    from leuk.errors import LeukError
    from leuk.explain import (branch_layers, display_image, explain_hybrid, explain_many, render_panel,
                              resolve_methods, restore_aspect)
    from leuk.explain.render import panel_info
    from leuk.hub import load_model
    from leuk.inference import Predictor
    from leuk.io import read_image
    from leuk.verdict import Verdict

    methods = resolve_methods(args.method)
    if args.out.suffix.lower() not in FIGURE_SUFFIXES:
        raise LeukError(f"--out {args.out}: use a picture file name ending in {', '.join(FIGURE_SUFFIXES)}")
    if args.steps < 1 or args.faithfulness_steps < 1:
        raise LeukError("--steps and --faithfulness-steps must be at least 1")
    if not 0.0 <= args.alpha <= 1.0:
        raise LeukError(f"--alpha must be in [0, 1], got {args.alpha}")
    image = read_image(args.image)  # a bad file fails here with one line, before the model loads
    loaded = load_model(args.model, device=args.device)
    pixel_values = loaded.processor(images=image, return_tensors="pt")["pixel_values"]
    checked = Predictor.from_loaded(loaded, device=args.device, batch_size=1).predict_images([image])[0]
    verdict = Verdict.from_reasons(checked.reasons, note=loaded.ood_note)
    print(f"verdict: {verdict.text}", file=sys.stderr)

    def caption(figure, title: str) -> None:
        """The figure's title, then the verdict wrapped to the figure's width."""
        width = max(40, int(figure.get_figwidth() * 10))
        figure.suptitle("\n".join([title, *textwrap.wrap(f"verdict: {verdict.text}", width)]), fontsize=8)

    explanations = explain_many(
        loaded.model, pixel_values, methods, target=args.target, n_steps=args.steps,
        internal_batch_size=args.batch_size, faithfulness_steps=args.faithfulness_steps,
        faithfulness_baseline=args.faithfulness_baseline, progress=len(methods) > 1, torch_compile=args.compile,
        baseline=args.baseline,
    )
    # what the model saw (squashed to its square input), stretched back to the image's aspect ratio
    shown = restore_aspect(display_image(pixel_values, loaded.processor), image.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for method, path in output_paths(args.out, methods).items():
        explanation = explanations[method]
        # the cell under the original says what the picture is about: the verdict, the probabilities, the notes
        info = "\n".join([f"verdict: {verdict.text}", panel_info(explanation, checked.probabilities)])
        figure = render_panel(shown, [explanation], sign=args.sign, alpha=args.alpha, cmap=args.cmap,
                              curves=not args.no_curves, info=info)
        caption(figure, f"{Path(args.image).name} - {loaded.spec}")
        figure.savefig(path, dpi=110)
        print(f"{explanation.summary()} -> {path}")
        for note in explanation.notes:
            print(f"  note: {note}")
    if args.branches:
        if not branch_layers(loaded.model):
            raise LeukError(f"--branches: {loaded.spec} has a single feature-map branch (use --method gradcam)")
        hybrid = explain_hybrid(loaded.model, pixel_values, target=args.target, n_steps=args.steps)
        path = args.out.with_name(f"{args.out.stem}-branches{args.out.suffix}")
        figure = render_panel(shown, {f"Grad-CAM {name}": cam for name, cam in hybrid.branch_maps.items()},
                              sign=args.sign, alpha=args.alpha, cmap=args.cmap)
        caption(figure, f"{hybrid.label or hybrid.target}: p={hybrid.probability:.3f}")
        figure.savefig(path, dpi=110)
        top = ", ".join(f"{name} {value:+.3g}" for name, value in hybrid.features.top(5))
        print(f"branches: Grad-CAM per branch -> {path}; features that drove the call (IG): {top}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        records = [_record(explanations[m]) for m in methods]
        args.json.write_text(json.dumps({"image": str(args.image), "model": loaded.spec,
                                         "verdict": {"uncertain": verdict.uncertain, "reasons": list(verdict.reasons),
                                                     "ood_score": checked.ood_score, "note": verdict.note},
                                         "explanations": records}, indent=2) + "\n", encoding="utf-8")
    return 0
