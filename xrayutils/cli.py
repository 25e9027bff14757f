"""``xray-book``: execute the chapters with papermill and build the HTML book.

    xray-book build --profile cpu --data-dir ../shared/data      # the whole book
    xray-book build --jobs 2                                     # independent chapters side by side
    xray-book run notebooks/00_data_exploration.ipynb -p seed 1  # one chapter
    xray-book fetch                                              # download the data only
    xray-book predict model.keras image.png folder/              # class probabilities per file
    xray-book plan --profile paper                               # what a profile costs, before running it

A profile (``profiles.yml``) is a set of papermill parameters per notebook;
``-p NAME VALUE`` overrides one of them.  Every name is checked against the
notebook's ``parameters`` cell: an unknown name is an error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from xrayutils import book, chapters, datasets, results
from xrayutils.constraints import ENGINES
from xrayutils.runner.build import Build, build, build_lock
from xrayutils.runner.data import absolute, fetch
from xrayutils.runner.execution import run_notebooks
from xrayutils.runner.parameters import (
    ROOT,
    ParameterError,
    chapter_notebooks,
    chosen_parameters,
    load_profiles,
    parse_overrides,
    with_defaults,
)


def overrides_of(args: argparse.Namespace) -> dict:
    """The ``-p`` overrides, with ``--engine`` as the modelling chapters' ``engine`` parameter."""
    overrides = parse_overrides(args.parameter)
    if getattr(args, "engine", None):
        overrides["engine"] = args.engine
    return overrides


def cmd_build(args: argparse.Namespace) -> int:
    return build(Build(profile=args.profile, data_dir=absolute(args.data_dir),
                       build_dir=Path(args.build_dir or ROOT / "_build" / args.profile).resolve(),
                       overrides=overrides_of(args), only=tuple(args.only or ()), jobs=args.jobs,
                       force=args.force, html=not args.no_html))


def cmd_run(args: argparse.Namespace) -> int:
    notebook = Path(args.notebook).resolve()
    build_dir = Path(args.build_dir or ROOT / "_build" / args.profile).resolve()
    overrides = overrides_of(args)
    with build_lock(build_dir):
        timings = run_notebooks([notebook], args.profile, overrides, build_dir, absolute(args.data_dir))
    return {"ok": 0, "stopped": 130}.get(timings[0]["status"], 1)


def cmd_fetch(args: argparse.Namespace) -> int:
    fetch(args.data_dir)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Print each chapter's training work under a profile, and its estimated time here and on a GPU (:mod:`xrayutils.plan`)."""
    import pandas as pd

    from xrayutils import cluster, plan

    works: list[plan.Work] = []
    data_dir = absolute(args.data_dir) or None
    for notebook, chosen in chosen_parameters(chapter_notebooks(), args.profile, parse_overrides(args.parameter)).items():
        if (record := chapters.get(notebook.stem)) and record.reproduces:
            works += plan.chapter_work(notebook.stem, with_defaults(notebook, chosen), data_dir)
        elif notebook.stem == chapters.TRUST_CHECKS:
            works += plan.shortcut_work(with_defaults(notebook, chosen), works)
    print(f"Profile {args.profile}: {' '.join(load_profiles()[args.profile]['description'].split())}")
    print(f"Measuring {args.steps} training steps of each model here: {book.device()}", flush=True)
    table = plan.table(works, steps=args.steps)
    sources = table.pop("GPU figure from").unique()
    with pd.option_context("display.width", 250):
        print(table.to_string(index=False, na_rep="-"))
    print(f"GPU: {'; '.join(sources)}")
    print(f"\n{plan.verdict(table, args.profile)}")
    print(f"Each model was measured in a process of its own; the largest peaked at {table['peak GB'].max():.1f} GB of memory.")
    workers = args.workers or cluster.workers()
    if workers > 1:
        wall = plan.side_by_side(works, table, workers)
        print(f"\nWith {workers} runs side by side (--engine ray on {workers} workers, each as fast as this machine: "
              f"GPUs, or machines like this one), minutes per chapter, longest run first:")
        print(wall.round(1).to_string())
        print(f"In all about {wall.sum():.0f} minutes, against {table['min here'].sum():.0f} with one run after another.")
    print("Here: measured training steps and forward passes times the images, epochs and runs; decoding, start-up and tracing "
          "are left out, so a real build takes longer. The chapters without training take minutes.")
    build_dir = Path(args.build_dir or ROOT / "_build" / args.profile)
    last = plan.last_build(build_dir)
    if last is not None:
        print(f"\nThis checkout's last {args.profile} build ({build_dir / 'timings.json'}), minutes per chapter:")
        print((last / 60).round(1).to_string())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Print each file's class probabilities; bad files get their message and the rest are still predicted."""
    import pandas as pd

    from xrayutils import predict

    try:
        model, classes = predict.load_model(args.model)
    except predict.ModelFileError as error:
        raise RuntimeError(str(error)) from None
    table = predict.predict_files(model, classes, args.inputs)
    if table.empty:
        raise RuntimeError(f"no image files found in {', '.join(args.inputs)}")
    if args.csv:
        results.write_atomic(Path(args.csv), table.to_csv(index=False))
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 80):
        print(table.fillna("").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    failed = table[table["error"] != ""]
    for row in failed.itertuples():
        print(f"xray-book predict: {row.file}: {row.error}", file=sys.stderr)
    print(f"{len(table) - len(failed)} of {len(table)} files predicted", file=sys.stderr)
    return 1 if len(failed) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xray-book", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in [
        ("build", cmd_build, "execute every chapter and build the HTML book"),
        ("run", cmd_run, "execute one notebook"),
        ("fetch", cmd_fetch, "locate or download the datasets"),
        ("predict", cmd_predict, "class probabilities of image files with a saved model"),
        ("plan", cmd_plan, "a profile's training work per chapter and model, and its estimated time here and on a GPU"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        if name == "predict":
            p.add_argument("model", help="a .keras file saved by a chapter (its .json sidecar names the classes)")
            p.add_argument("inputs", nargs="+", help="image files and/or folders")
            p.add_argument("--csv", help="also write the table to this CSV file")
            continue
        p.add_argument("--data-dir", default=os.environ.get("XRAY_DATA_DIR", ""),
                       help=f"folder holding {', '.join(name + '/' for name in datasets.SOURCES)} (default: $XRAY_DATA_DIR)")
        if name == "fetch":
            continue
        if name == "run":
            p.add_argument("notebook", help="path to a chapter notebook")
        if name == "plan":
            p.add_argument("--steps", type=int, default=2, help="training steps timed per model (after a first, traced one)")
            p.add_argument("--workers", type=int, default=1,
                           help="also estimate the wall time with this many runs side by side (--engine ray on as many GPUs or machines); "
                                "0: as many as the Ray cluster of RAY_ADDRESS (or a local one) has GPUs, else CPUs")
        p.add_argument("--profile", default="cpu", help="smoke, cpu or paper (see profiles.yml)")
        p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                       help="override one parameter (repeatable)")
        p.add_argument("--build-dir", help="default: _build/<profile>")
        if name in ("build", "run"):
            p.add_argument("--engine", choices=ENGINES,
                           help="where chapters 01-03 train their runs: auto (the default: ray with several GPUs or RAY_ADDRESS, "
                                "else local), local (in the kernel), ray (Ray tasks side by side, on RAY_ADDRESS's cluster or a "
                                "local one) or mirrored (in the kernel, each run over every GPU); sets their engine parameter")
        if name == "build":
            p.add_argument("--only", nargs="+", help="chapters whose name starts with these (e.g. 00)")
            p.add_argument("--no-html", action="store_true", help="execute the notebooks only")
            p.add_argument("--force", action="store_true",
                           help="run every chapter, also those unchanged since their last run here (--only always runs its chapters)")
            p.add_argument("--jobs", type=int, default=1, help="chapters run at once (those that need others' results wait)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # kernels inherit it: TensorFlow's C++ messages stay off the pages
    # Kernels inherit this: an MPLBACKEND such as Agg would stop figures reaching the notebook.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        return args.func(args)
    except (ParameterError, datasets.DataNotFoundError, RuntimeError, FileNotFoundError) as error:
        print(f"xray-book: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a read-only or full build folder: which file, and why
        where = error.filename or "the build folder"
        print(f"xray-book: could not write {where}: {error.strerror or error} (check the folder's permissions and free space)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
