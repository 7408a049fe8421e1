"""``leuk synth cnmc|aria``: write a synthetic dataset in the exact on-disk layout of C-NMC 2019 or Aria ALL."""

from __future__ import annotations

import argparse

# kind -> (patients, images per patient, size) defaults
DEFAULTS = {"cnmc": (12, 10, 450), "aria": (8, 6, 256)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind", choices=sorted(DEFAULTS),
        help="cnmc: single segmented cells on black, Kaggle C-NMC layout (BMP); aria: multi-cell smears (JPG) "
        "with Segmented/, Masks/ and patients.csv",
    )
    parser.add_argument("--out", required=True, help="folder to write into (created if missing)")
    parser.add_argument("--patients", type=int, help="number of patients (default: 12 for cnmc, 8 for aria)")
    parser.add_argument(
        "--images-per-patient", type=int,
        help="images per patient (default: 10 for cnmc, where it is the mean, 6 for aria)",
    )
    parser.add_argument("--size", type=int, help="image side in pixels (default: 450 for cnmc, 256 for aria)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same arguments give byte-identical files")
    parser.add_argument(
        "--confounding", type=float, default=0.5,
        help="strength of each patient's stain/illumination signature (0 = none, 1 = strong; default 0.5)",
    )
    parser.add_argument(
        "--class-evidence", choices=("morphology", "nucleus"), default="morphology",
        help="where the class shows: morphology = the whole cell (size, outline, cytoplasm, nucleus; default), "
        "nucleus = only inside the nucleus (for checking attribution maps against the nucleus masks)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a synthetic tree already in --out")


def run(args: argparse.Namespace) -> int:
    from leuk.data import dataset_summary, load_aria, load_cnmc
    from leuk.data.synthetic import write_aria, write_cnmc

    patients, images, size = DEFAULTS[args.kind]
    options = dict(
        patients=patients if args.patients is None else args.patients,
        images_per_patient=images if args.images_per_patient is None else args.images_per_patient,
        size=size if args.size is None else args.size,
        seed=args.seed,
        confounding=args.confounding,
        class_evidence=args.class_evidence,
        overwrite=args.overwrite,
        progress=True,
    )
    if args.kind == "cnmc":
        root = write_cnmc(args.out, **options)
        written, where = load_cnmc(root), root / "C-NMC_Leukemia"
    else:
        root = write_aria(args.out, **options)
        written, where = load_aria(root), root
    summary = dataset_summary(written)
    classes = ", ".join(
        f"{name} {count} ({summary['patients_per_class'][name]} pt)" for name, count in summary["per_class"].items()
    )
    print(f"wrote {where}")
    print(
        f"{summary['rows']} images of {summary['patients']} patients: {classes}; "
        f"{options['size']} px, seed {args.seed}, confounding {args.confounding}, class evidence {args.class_evidence}"
    )
    return 0
