"""``leuk push``: publish a model folder (and optionally Monte Carlo results) to the Hugging Face Hub."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="save_pretrained model folder to publish")
    parser.add_argument("--repo", metavar="ORG/NAME", help="model repo id on the Hub")
    parser.add_argument("--revision", metavar="BRANCH", help="branch to commit to (default: main)")
    parser.add_argument("--tag", metavar="TAG", help="tag the new commit (e.g. v1.0) and pin it in the card")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--dry-run", action="store_true", help="write the upload folder and list it; upload nothing")
    parser.add_argument("--out", metavar="DIR", help="where to write the upload folder (default: a temporary folder)")
    parser.add_argument("--eval-results", metavar="JSON", help="evaluation JSON (default: <model>/eval_results.json)")
    parser.add_argument("--mc-summary", metavar="FILE", help="Monte Carlo summary.json / summary.md for the card")
    parser.add_argument("--message", metavar="TEXT", help="commit message")
    parser.add_argument("--results", metavar="PARQUET", help="Monte Carlo results table to publish as a dataset")
    parser.add_argument("--results-repo", metavar="ORG/NAME", help="dataset repo id for --results")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from leuk.errors import LeukError
    from leuk.hub import push_model, push_results

    if not args.model and not args.results:
        raise LeukError(
            "nothing to push: give --model DIR --repo ORG/NAME and/or --results PARQUET --results-repo ORG/NAME"
        )
    if args.model and not args.repo:
        raise LeukError("--model needs --repo ORG/NAME")
    if args.results and not args.results_repo:
        raise LeukError("--results needs --results-repo ORG/NAME")
    if args.results_repo and not args.results:
        raise LeukError("--results-repo needs --results PARQUET")

    api = None
    if not args.dry_run:
        from huggingface_hub import HfApi

        api = HfApi()
    out = Path(args.out) if args.out else None
    if args.model:
        result = push_model(
            args.model, args.repo, api=api, revision=args.revision, private=args.private, dry_run=args.dry_run,
            commit_message=args.message, out_dir=out / "model" if out and args.results else out,
            eval_results=args.eval_results, mc_summary=args.mc_summary, tag=args.tag,
        )
        print(result.describe())
        if not args.dry_run:
            pin = args.tag or result.commit_oid
            if pin:
                print(f'load it with: leuk.hub.load_model("{args.repo}@{pin}")')
    if args.results:
        result = push_results(
            args.results, args.results_repo, api=api, summary=args.mc_summary, dry_run=args.dry_run,
            out_dir=out / "results" if out and args.model else out, private=args.private,
        )
        print(result.describe())
    return 0
