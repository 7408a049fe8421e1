"""How well the stored out-of-distribution detector of a model folder separates its own kind of image from others.

    python bench/bench_ood.py --model runs/real-effse/fold_0 --data ../shared/datasets/cnmc-real/C-NMC_Leukemia \\
        --foreign aria-real=../shared/datasets/aria-real/Original --out bench/results/ood-efficientnet-se.json

In-distribution: the **test** part of the folder's ``training_split.json`` (subjects the model and its detector
never saw), found under ``--data``. Out of distribution: every ``--foreign NAME=FOLDER`` (images found
recursively), the bundled smear or cell samples (``--samples``), and images this script makes, seeded:
``blank`` (uniform colours), ``noise`` (uniform, Gaussian, salt-and-pepper), ``photo`` (procedural landscape
photos: sky gradient, sun, hills, grain), ``figure`` (matplotlib charts and a text page) and ``screenshot``
(headless Chromium screenshots of web pages, when Chromium is installed).

Every image goes through the served path (:class:`leuk.inference.Predictor` with the stored detector), so the
flag rates are those of ``leuk predict`` and the apps. Reported per set: images, share flagged by the feature
distance, by the image statistics and by either (the served rule), share still called confident, and the AUROC
of in-distribution against that set for the feature distance, the statistics and the combined score
``max(distance / threshold, z / z_threshold)`` (the served decision is "combined > 1").
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# ------------------------------------------------------------------------------------------ foreign images

def blank_images() -> list[Image.Image]:
    colours = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (30, 30, 30), (230, 200, 210), (200, 160, 200),
               (90, 40, 120), (250, 240, 230)]
    return [Image.new("RGB", (256, 256), colour) for colour in colours]


def noise_images(seed: int = 0, n: int = 12) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        side = int(rng.choice([64, 128, 256, 450]))
        kind = i % 3
        if kind == 0:
            array = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        elif kind == 1:
            array = np.clip(rng.normal(128, 50, (side, side, 1)), 0, 255).repeat(3, axis=2).astype(np.uint8)
        else:
            array = np.where(rng.random((side, side, 1)) < 0.5, 0, 255).repeat(3, axis=2).astype(np.uint8)
        images.append(Image.fromarray(array))
    return images


def photo_images(seed: int = 0, n: int = 16, size: int = 320) -> list[Image.Image]:
    """Procedural outdoor photos: sky gradient, a sun, two ranges of hills, smooth texture and sensor grain."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        top, horizon = rng.uniform(40, 140, 3), rng.uniform(150, 255, 3)
        sky = top + (horizon - top) * ys[..., None]
        picture = sky.copy()
        cx, cy, radius = rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4), rng.uniform(0.04, 0.09)
        sun = ((xs - cx) ** 2 + (ys - cy) ** 2) < radius ** 2
        picture[sun] = rng.uniform(230, 255, 3)
        for depth in range(2):
            phase, freq = rng.uniform(0, 6.3), rng.uniform(3, 9)
            ridge = 0.55 + 0.1 * depth + 0.08 * np.sin(freq * xs[0] + phase) + 0.03 * np.sin(3.1 * freq * xs[0])
            colour = rng.uniform([20, 60, 10], [110, 160, 80]) * (1.0 - 0.25 * depth)
            below = ys > ridge[None, :]
            picture[below] = colour
        texture = np.asarray(Image.fromarray(rng.integers(0, 256, (size // 8, size // 8), dtype=np.uint8))
                             .resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
        picture += (texture[..., None] - 128) * 0.25 * (ys[..., None] > 0.5)
        picture += rng.normal(0, 4, picture.shape)
        image = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
        images.append(image)
    return images


def figure_images(seed: int = 0) -> list[Image.Image]:
    """Charts rendered with matplotlib (line, bar, scatter, histogram, image map) and a page of text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    images = []

    def render(fig) -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        images.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))

    for style in ("default", "dark_background", "ggplot"):
        with plt.style.context(style):
            fig, ax = plt.subplots(figsize=(5, 4))
            x = np.linspace(0, 10, 200)
            for k in range(3):
                ax.plot(x, np.sin(x * (k + 1) * 0.5) + rng.normal(0, 0.1, x.size), label=f"series {k}")
            ax.legend()
            ax.set_title("Loss per epoch")
            render(fig)
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.bar(list("ABCDEF"), rng.uniform(1, 10, 6))
            ax.set_ylabel("count")
            render(fig)
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.scatter(rng.normal(size=300), rng.normal(size=300), c=rng.uniform(size=300), s=8)
            render(fig)
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.hist(rng.normal(size=2000), bins=40)
            render(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.imshow(rng.normal(size=(32, 32)).cumsum(axis=0), cmap="viridis")
    render(fig)
    fig = plt.figure(figsize=(6, 7))
    text = ("Acute lymphoblastic leukaemia is a cancer of the lymphoid line of blood cells characterised by the "
            "development of large numbers of immature lymphocytes. ") * 6
    fig.text(0.05, 0.95, "\n".join(text[i:i + 70] for i in range(0, len(text), 70)), va="top", family="serif",
             fontsize=9)
    render(fig)
    return images


SCREENSHOT_PAGES = (
    "<h1>Sign in</h1><form><label>E-mail <input value='someone@example.org'></label><br><br>"
    "<label>Password <input type=password value='secret'></label><br><br><button>Continue</button></form>",
    "<article style='font-family:Georgia;max-width:640px'><h2>Morning news</h2>" + "<p>" + "Lorem ipsum dolor sit "
    "amet, consectetur adipiscing elit. " * 40 + "</p></article>",
    "<body style='background:#1e1e1e;color:#d4d4d4;font-family:monospace'><pre>" + "\n".join(
        f"{i:3d}  def function_{i}(x):\n       return x * {i}" for i in range(20)) + "</pre></body>",
    "<table border=1 cellpadding=6>" + "".join(
        "<tr>" + "".join(f"<td>{r * c}</td>" for c in range(8)) + "</tr>" for r in range(20)) + "</table>",
    "<body style='margin:0;background:linear-gradient(#6a11cb,#2575fc);height:100vh;color:white;"
    "font-family:sans-serif'><h1 style='padding:40px'>Welcome</h1><p style='padding:40px'>Start your free trial"
    "</p></body>",
    "<body style='font-family:sans-serif'><nav style='background:#eee;padding:10px'>Home | Shop | About</nav>"
    + "".join(f"<div style='display:inline-block;width:180px;height:140px;margin:8px;background:hsl({h},60%,70%)'>"
              f"item {h}</div>" for h in range(0, 360, 40)) + "</body>",
)


def screenshot_images(chromium: str = "/usr/bin/chromium") -> tuple[list[Image.Image], str | None]:
    """Headless Chromium screenshots of :data:`SCREENSHOT_PAGES` at two window sizes; ``([], reason)`` when
    Chromium or playwright is missing."""
    if not Path(chromium).is_file():
        return [], f"no Chromium at {chromium}"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return [], "playwright is not installed"
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    images = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        try:
            for width, height in ((800, 600), (450, 450)):
                page = browser.new_page(viewport={"width": width, "height": height})
                for html in SCREENSHOT_PAGES:
                    page.set_content(html)
                    images.append(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
                page.close()
        finally:
            browser.close()
    return images, None


def folder_images(folder: Path, limit: int | None, seed: int) -> list[str]:
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None and len(files) > limit:
        rng = np.random.default_rng(seed)
        files = sorted(rng.choice(files, size=limit, replace=False).tolist())
    return files


# ------------------------------------------------------------------------------------------------- scoring

def score_set(predictor, images: list) -> dict[str, np.ndarray]:
    predictions = predictor.predict_images(images)
    failed = [p for p in predictions if not p.ok]
    if failed:
        raise SystemExit(f"error: {len(failed)} image(s) could not be read, e.g. {failed[0].error}")
    feature = np.array([p.ood_score for p in predictions])
    stats = np.array([p.ood_stats_score for p in predictions])
    return {
        "feature": feature,
        "stats": stats,
        "combined": np.maximum(feature / predictions[0].ood_threshold, stats / predictions[0].ood_stats_threshold),
        "uncertain": np.array([p.uncertain for p in predictions]),
        "top_probability": np.array([p.top_probability for p in predictions]),
    }


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    scores = np.concatenate([inside, outside])
    labels = np.concatenate([np.zeros(len(inside)), np.ones(len(outside))])
    return float(roc_auc_score(labels, scores))


def summarise(scores: dict[str, np.ndarray], detector, inside: dict[str, np.ndarray] | None) -> dict:
    feature_flag = scores["feature"] > detector.threshold
    stats_flag = scores["stats"] > detector.stats_threshold
    record = {
        "n": int(len(scores["feature"])),
        "flagged_feature": float(feature_flag.mean()),
        "flagged_stats": float(stats_flag.mean()),
        "flagged": float((feature_flag | stats_flag).mean()),
        "called_confident": float((~scores["uncertain"]).mean()),
        "feature_median": float(np.median(scores["feature"])),
        "stats_median": float(np.median(scores["stats"])),
    }
    if inside is not None:
        record["auroc"] = {key: auroc(inside[key], scores[key]) for key in ("feature", "stats", "combined")}
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="model folder with a stored detector")
    parser.add_argument("--data", required=True, type=Path, help="the folder the model was trained on")
    parser.add_argument("--foreign", action="append", default=[], metavar="NAME=FOLDER",
                        help="a set of foreign images (found recursively); repeatable")
    parser.add_argument("--samples", type=Path, default=None,
                        help="bundled samples of the other task (default: assets/samples/aria for a C-NMC model, "
                             "assets/samples/cnmc for an Aria model)")
    parser.add_argument("--max-per-set", type=int, default=None, help="seeded subsample of each folder set")
    parser.add_argument("--no-screenshots", action="store_true", help="skip the Chromium screenshots")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default=None, help="what the model is, for the report (e.g. 'synthetic demo')")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from leuk.hub import load_model
    from leuk.inference import Predictor
    from leuk.ood import split_images

    started = time.perf_counter()
    loaded = load_model(str(args.model.resolve()), device=args.device)
    detector = loaded.ood_detector
    if detector is None:
        print(f"error: {loaded.ood_note}", file=sys.stderr)
        return 1
    predictor = Predictor(loaded.model, loaded.processor, device=args.device, batch_size=args.batch_size,
                          detector=detector)
    test_paths, _, test_subjects = split_images(args.model, args.data, "test")
    print(f"in-distribution: {len(test_paths)} test images of {len(set(test_subjects))} held-out subjects of "
          f"{args.model}", flush=True)
    inside = score_set(predictor, test_paths)

    task = "aria" if "hybrid" in str(loaded.model.config.model_type) else "cnmc"
    samples = args.samples or REPO / "assets" / "samples" / ("cnmc" if task == "aria" else "aria")
    sets: dict[str, list] = {}
    for item in args.foreign:
        name, _, folder = item.partition("=")
        sets[name] = folder_images(Path(folder), args.max_per_set, args.seed)
    sets[f"samples-{samples.name}"] = folder_images(samples, None, args.seed)
    sets["blank"] = blank_images()
    sets["noise"] = noise_images(args.seed)
    sets["photo"] = photo_images(args.seed)
    sets["figure"] = figure_images(args.seed)
    notes = []
    if not args.no_screenshots:
        shots, why = screenshot_images()
        if shots:
            sets["screenshot"] = shots
        else:
            notes.append(f"screenshots skipped: {why}")

    results = {"in_distribution": summarise(inside, detector, None), "foreign": {}}
    subjects = np.asarray(test_subjects)
    flagged = (inside["feature"] > detector.threshold) | (inside["stats"] > detector.stats_threshold)
    results["in_distribution"]["flagged_per_subject"] = {
        str(s): {"n": int((subjects == s).sum()), "flagged": float(flagged[subjects == s].mean())}
        for s in sorted(set(test_subjects))}
    outside_all = {key: [] for key in ("feature", "stats", "combined", "uncertain")}
    for name, images in sets.items():
        if not images:
            notes.append(f"set {name} is empty")
            continue
        print(f"foreign set {name}: {len(images)} images", flush=True)
        scores = score_set(predictor, images)
        results["foreign"][name] = summarise(scores, detector, inside)
        for key in outside_all:
            outside_all[key].append(scores[key])
    pooled = {key: np.concatenate(value) for key, value in outside_all.items()}
    results["foreign_pooled"] = summarise(pooled, detector, inside)
    results.update({
        "model": str(args.model), "label": args.label, "model_type": loaded.model.config.model_type,
        "is_demo": loaded.is_demo, "detector": {"threshold": detector.threshold,
                                                "stats_threshold": detector.stats_threshold,
                                                "threshold_rule": detector.info.get("threshold_rule"),
                                                "fit": detector.info.get("fit", {}).get("n_train_images")},
        "command": "python bench/bench_ood.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date": dt.date.today().isoformat(), "seconds": round(time.perf_counter() - started, 1), "notes": notes,
    })
    print(markdown(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def markdown(results: dict) -> str:
    """The figures as a Markdown table (what docs/benchmarks.md shows)."""
    inside = results["in_distribution"]
    lines = [f"threshold {results['detector']['threshold']:.2f} (feature distance), "
             f"{results['detector']['stats_threshold']:.2f} (image-statistics z); "
             f"{results['detector']['threshold_rule']}",
             "",
             "| set | images | flagged: feature | flagged: statistics | flagged: either (served) | called confident "
             "| AUROC feature | AUROC statistics | AUROC combined |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| in-distribution (held-out test subjects) | {inside['n']} | {inside['flagged_feature']:.1%} | "
             f"{inside['flagged_stats']:.1%} | **{inside['flagged']:.1%}** | {inside['called_confident']:.1%} | | | |"]
    per_subject = inside.get("flagged_per_subject") or {}
    if per_subject:
        lines.insert(1, "in-distribution flagged per held-out subject: " + ", ".join(
            f"{s} {r['flagged']:.1%} of {r['n']}" for s, r in per_subject.items()))
    for name, record in [*results["foreign"].items(), ("all foreign", results["foreign_pooled"])]:
        a = record["auroc"]
        lines.append(f"| {name} | {record['n']} | {record['flagged_feature']:.1%} | {record['flagged_stats']:.1%} | "
                     f"**{record['flagged']:.1%}** | {record['called_confident']:.1%} | {a['feature']:.4f} | "
                     f"{a['stats']:.4f} | **{a['combined']:.4f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
