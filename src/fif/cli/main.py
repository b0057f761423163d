"""The ``fif`` command line.

    fif run [--cfg] [KEY=VALUE ...]       run an experiment (Hydra-style overrides)
    fif run -m KEY=A,B [KEY=VALUE ...]    run a sweep (cartesian product) and print one table
    fif run ... log.resume=true           continue a killed run exactly (same log.folder/log.name)
    fif pretrain-base [--out DIR] ...     reproduce the shipped mini CLIP
    fif data build-mini [--root DIR]      generate the mini benchmark (runs do this on first use)
    fif data verify ROOT [--tar] ...      check a FiF data root: present, complete, corrupt (exit 1 on problems)
    fif data show DATASET [--out PNG]     a grid of a dataset's samples with their captions
    fif data download ROOT [--datasets ..] the reference's dataset archives + info files (resumable, checksummed)
    fif data resize ROOT                  the 224-px variants the reference reads
    fif data pool OUT (--urls F | --adopt DIR)  a pretraining pool of webdataset shards (img2dataset) or adopt one
    fif weights fetch NAME [--cache-dir D] prefetch a named backbone's open_clip weights (checksum recorded)
    fif weights list [--cache-dir D]      named backbones and whether each is cached
    fif streams build --order O --out F   a deployment ordering of a data root's classes
    fif streams list                      the shipped streams (name, classes, datasets, origin)
    fif schedules plot [--all] [--out DIR] [KEY=VALUE ...]   learning rate over the stream, as PNGs
    fif eval [--model M] [--subset] [--out F] [KEY=VALUE ...]  zero-shot scores of any model (named, a run's
                                          final_model.pt / checkpoint / folder) on any datasets, no training
    fif results RUN... [--csv|--json|--seeds]  zero-shot / final / averaged A_KA, A_ZS, GM of runs (mean ± std over seeds)
    fif report RUN... [--out HTML]        a self-contained HTML report with plots of runs
    fif flops [--arch A] [--methods M,..] GFLOPs, peak memory, MAF and budget steps of every method on a backbone

Bad input ends with one line, ``error: ...``, and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fif.errors import FifError


def _results_table(results: dict) -> str:
    from rich.console import Console
    from rich.table import Table

    from fif.results import POINTS, RunResults

    table = Table(title="FoMo-in-Flux results (percent)")
    table.add_column("point")
    for column in ("A_KA", "A_ZS", "GM"):
        table.add_column(column, justify="right")
    view = RunResults(results)
    for label, key in zip(("zero-shot", "final", "averaged over tasks"), POINTS):
        row = view.point(key)
        table.add_row(label, f"{row['A_KA']:.2f}", f"{row['A_ZS']:.2f}", f"{row['geometric_mean']:.2f}")
    console = Console(file=sys.stdout, width=100)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def cmd_run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from fif.config import compose

    if args.multirun:
        from fif.cli.sweep import cmd_multirun

        return cmd_multirun(args)
    cfg = compose(args.overrides)
    if args.cfg:
        print(OmegaConf.to_yaml(cfg, resolve=True), end="")
        return 0
    from fif.train.run import run_experiment

    output = run_experiment(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports
        print(_results_table(output.results), end="")
        print(f"results: {output.run_dir / 'results.json'}")
    return 0


def cmd_pretrain_base(args: argparse.Namespace) -> int:
    from fif.data.mini.build import default_root
    from fif.models.backbone import mini_clip_dir
    from fif.tools.pretrain_base import pretrain_base

    out = Path(args.out) if args.out else mini_clip_dir()
    report = pretrain_base(out, Path(args.root) if args.root else default_root(args.seed), args.pool_shards,
                           args.epochs, args.batch_size, args.lr, seed=args.seed)
    print(f"wrote {out} ({report['steps']} steps, {report['seconds']:.0f}s); zero-shot scores:")
    for name, score in report["scores"].items():
        print(f"  {name:<14} {score:6.2f}")
    return 0


def cmd_build_mini(args: argparse.Namespace) -> int:
    from fif.data.mini.build import build_datasets, default_root, pool_shards

    root = build_datasets(Path(args.root) if args.root else default_root(args.seed), seed=args.seed)
    shards = pool_shards(root, args.pool_shards, seed=args.seed)
    print(f"mini benchmark ready at {root} ({len(shards)} pool shards)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fif", description="FoMo-in-Flux: continual multimodal pretraining.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one experiment",
                         description="Run one continual-pretraining experiment. Overrides use Hydra syntax, e.g. "
                                     "experiment=mini continual.method=finetune experiment.task.num=5. "
                                     "A killed run continues exactly with the same command plus log.resume=true "
                                     "(docs/resume.md).")
    run.add_argument("--cfg", action="store_true", help="print the resolved config and exit")
    run.add_argument("-m", "--multirun", action="store_true",
                     help="sweep: run every combination of comma-separated values in turn, then print one "
                          "table (with --cfg: list the runs); exit 1 if any run failed")
    run.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    run.set_defaults(func=cmd_run)

    pre = sub.add_parser("pretrain-base", help="reproduce the shipped mini CLIP",
                         description="Pretrain the mini CLIP on the generated pretraining pool (tens of minutes on "
                                     "2 CPU cores) and write it as an open_clip local-dir folder.")
    pre.add_argument("--out", help="output folder (default: the package's shipped mini_clip folder)")
    pre.add_argument("--root", help="mini benchmark folder (default: the cache folder)")
    pre.add_argument("--pool-shards", type=int, default=20, help="pool shards of 5,000 samples to train on")
    pre.add_argument("--epochs", type=int, default=7, help="passes over the pool")
    pre.add_argument("--batch-size", type=int, default=256, help="contrastive batch size")
    pre.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warmup + cosine)")
    pre.add_argument("--seed", type=int, default=0, help="data and training seed")
    pre.set_defaults(func=cmd_pretrain_base)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    build = data.add_parser("build-mini", help="generate the mini benchmark and its pool shards",
                            description="Generate the mini benchmark (datasets in the FiF layout + pool tar shards).")
    build.add_argument("--root", help="output folder (default: $FIF_CACHE or ~/.cache/fif)")
    build.add_argument("--pool-shards", type=int, default=4, help="pool shards of 5,000 samples")
    build.add_argument("--seed", type=int, default=0, help="data seed")
    build.set_defaults(func=cmd_build_mini)
    from fif.cli.verify import add_verify_command

    add_verify_command(data)
    from fif.cli.streams import add_commands

    add_commands(sub, data)
    from fif.cli.data_fetch import add_commands as add_fetch_commands; add_fetch_commands(data)  # noqa: E702
    from fif.cli.pool import add_commands as add_pool_commands; add_pool_commands(data)  # noqa: E702
    from fif.cli.weights import add_commands as add_weights_commands; add_weights_commands(sub)  # noqa: E702
    from fif.cli.schedules import add_parser as add_schedules_parser

    add_schedules_parser(sub)
    from fif.cli.results import add_parser as add_results_commands

    add_results_commands(sub)
    from fif.cli.flops import add_parser as add_flops_parser; add_flops_parser(sub)  # noqa: E702
    from fif.cli.evaluate import add_parser as add_eval_parser; add_eval_parser(sub)  # noqa: E702
    from fif.cli.study import add_parser as add_study_parser; add_study_parser(sub)  # noqa: E702
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FifError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
