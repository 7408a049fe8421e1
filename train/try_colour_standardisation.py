"""Experiment of issue 26 (measured 2026-12-07, negative): recipe 3 (frozen ImageNet Lite0, 320 px, SE block and
head on cached maps; ``train/train_frozen_efficientnet_se.py``) on cells whose foreground colour is standardised
per image, on the same three leave-one-HEM-subject-out folds.

    python train/try_colour_standardisation.py lab|gray|none --data ../shared/datasets/cnmc-real/C-NMC_Leukemia \
        --work runs/colour-std

Each cell's foreground (pixels brighter than 12 in some channel; the C-NMC background is black) gets, in OpenCV's
float CIE Lab, a fixed mean and spread chosen before any image was looked at (a plausible Romanowsky purple: L 55
+- 15, a 25 +- 8, b -20 +- 8); ``gray`` keeps only the standardised lightness. The statistic is the image's own, so
nothing is fitted across images or subjects. It is scored on the fold models' heads directly (no saved folder: the
saved processor does not standardise), pooled over folds, with the largest share of cells that two thresholds on
p(all) can call confident at >= 95% right. Result (``lab``): pooled weighted F1 0.754, AUC 0.799, specificity
0.733, confident share at most 4.8%, against recipe 3's 0.777 / 0.810 / 0.724 and 10.3% (one threshold): no help.
This choice would have been post hoc (the folds' test subjects had been scored before); it is recorded, not used.
"""
import argparse
import copy
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from leuk.data import load_cnmc
from leuk.data.splits import leave_one_rare_subject_out
from leuk.metrics import classification_metrics
from leuk.models import create_model, family_of
from leuk.training.frozen_head import FrozenRecipe, feature_maps, fit_head, head_logits

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("mode", choices=("lab", "gray", "none"))
parser.add_argument("--data", required=True, help="the C-NMC folder (C-NMC_Leukemia)")
parser.add_argument("--work", required=True, help="folder for the cached feature maps and the out-of-fold scores")
args = parser.parse_args()
MODE, WORK = args.mode, Path(args.work)
WORK.mkdir(parents=True, exist_ok=True)
# a-priori target (OpenCV float Lab), a plausible Romanowsky purple; not fitted on any image
T_MEAN, T_STD = np.array([55.0, 25.0, -20.0]), np.array([15.0, 8.0, 8.0])

def standardise(path):
    rgb = np.asarray(Image.open(path).convert("RGB"))
    fg = rgb.max(axis=2) > 12
    if MODE == "none" or fg.sum() < 50:
        return Image.fromarray(rgb)
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    px = lab[fg]
    m, s = px.mean(0), np.maximum(px.std(0), 1e-3)
    if MODE == "gray":
        out = lab.copy(); out[..., 1:] = 0
        out[fg, 0] = (px[:, 0] - m[0]) / s[0] * T_STD[0] + T_MEAN[0]
    else:
        out = lab.copy(); out[fg] = (px - m) / s * T_STD + T_MEAN
    out[..., 0] = np.clip(out[..., 0], 0, 100)
    back = np.clip(cv2.cvtColor(out, cv2.COLOR_Lab2RGB) * 255, 0, 255).astype(np.uint8)
    back[~fg] = rgb[~fg]
    return Image.fromarray(back)

data_root = Path(args.data).resolve()
recipe = FrozenRecipe(image_size=320, data=str(data_root), out="/tmp")
ds = load_cnmc(data_root)
names = list(ds.features["label"].names)
paths = [str(p) for p in ds["path"]]
labels = np.asarray(ds["label"], dtype=np.int64)
groups = np.asarray([str(p) for p in ds["patient_id"]])
base = create_model(recipe.model, pretrained=recipe.pretrained_source, image_size=320,
                    id2label=dict(enumerate(names)), num_labels=len(names))
proc = family_of(base).processor(base.config)
cache = WORK / f"maps_{MODE}.npy"
t0 = time.time()
if cache.exists():
    maps = np.load(cache)
else:
    images = [standardise(p) for p in paths]
    if MODE != "none":
        for i in (0, 500, 1500):
            images[i].save(WORK / f"example_{MODE}_{i}.png")
    maps = feature_maps(base, proc, images, progress=False)
    np.save(cache, maps)
print("maps", maps.shape, round(time.time() - t0), "s", flush=True)
splits = leave_one_rare_subject_out(labels, groups, seed=0, val_size=0.12)
yt, pp, ss = [], [], []
for k, sp in enumerate(splits):
    fit = fit_head(copy.deepcopy(base), maps, labels, sp.train, sp.val, recipe)
    lg = head_logits(fit.model, maps, sp.test) / fit.temperature
    p = torch.softmax(torch.tensor(lg), 1).numpy()
    m = classification_metrics(labels[sp.test], p, names)
    print(f"fold {k}: F1w {m['f1_weighted']:.3f} AUC {m['roc_auc']:.3f} spec {m['specificity']:.3f}", flush=True)
    yt.append(labels[sp.test]); pp.append(p); ss.append(groups[sp.test])
y, p, s = np.concatenate(yt), np.concatenate(pp), np.concatenate(ss)
m = classification_metrics(y, p, names)
print(f"POOLED {MODE}: F1w {m['f1_weighted']:.3f} AUC {m['roc_auc']:.3f} sens {m['sensitivity']:.3f} spec {m['specificity']:.3f}")
for subj in sorted(set(s)):
    i = s == subj
    print(subj, int(y[i][0]), round(float((p[i].argmax(1) == y[i]).mean()), 3))
ia = names.index("all")
pa = p[:, ia]; yall = (y == ia)
best = (0, None)
qs = np.quantile(pa, np.linspace(0, 1, 401))
for hi in qs:
    for lo in qs[qs <= hi]:
        conf = (pa >= hi) | (pa <= lo)
        if conf.sum() == 0: continue
        acc = ((pa[conf] >= hi) == yall[conf]).mean()
        if acc >= 0.95 and conf.mean() > best[0]:
            best = (conf.mean(), (float(lo), float(hi)))
print("max confident share at >=95%:", round(best[0], 4), best[1])
np.savez(WORK / f"oof_{MODE}.npz", y=y, p=p, s=s)
