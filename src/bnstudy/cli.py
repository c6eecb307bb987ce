"""`bnstudy <subcommand>`: the commands the workflow's rules call.

Each subcommand is one `_add_<name>(subparsers)` function that declares its options and sets
`func`, the function that runs it. Heavy imports (JAX) happen inside the run functions, so
`bnstudy --help` and argument errors are instant.
"""

from __future__ import annotations

import argparse
import sys


def _add_prepare_data(sub) -> None:
    p = sub.add_parser(
        "prepare-data",
        help="generate, load or download one dataset and write it as a .npz file",
        description="Prepare one dataset (fixed train/validation/test splits, standardized with "
        "training statistics) and write it atomically. Does nothing if OUT exists and verifies.",
    )
    p.add_argument("name", help="dataset name (see bnstudy.data.NAMES)")
    p.add_argument("--out", required=True, help="output .npz path")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator and of the split")
    p.add_argument("--val-size", type=int, default=None, help="validation examples carved from train")
    p.add_argument("--n-samples", type=int, default=None, help="generated examples (generated sets only)")
    p.add_argument("--noise", type=float, default=None, help="generator noise (generated sets only)")
    p.add_argument("--cache-dir", default=None, help="download cache (downloaded sets only)")
    p.set_defaults(func=_run_prepare_data)


def _run_prepare_data(args) -> None:
    from pathlib import Path

    from bnstudy import data

    out = Path(args.out)
    if out.exists():
        try:
            data.load(out)
            print(f"{out} exists and loads; nothing to do", file=sys.stderr)
            return
        except Exception as e:  # a corrupt file is rebuilt, not trusted
            print(f"{out} exists but does not load ({e}); rebuilding", file=sys.stderr)
    ds = data.prepare(args.name, seed=args.seed, val_size=args.val_size,
                      n_samples=args.n_samples, noise=args.noise, cache_dir=args.cache_dir)
    data.save(ds, out)
    print(f"wrote {out}: {ds.meta}", file=sys.stderr)


def _add_train(sub) -> None:
    from bnstudy.models import ACTIVATIONS, NORMS, PLACEMENTS  # light: no compilation at import
    from bnstudy.train import OPTIMIZERS, SCHEDULES

    p = sub.add_parser(
        "train",
        help="train every seed x learning rate of one grid cell and measure it",
        description="Train all seeds x learning rates of one cell (dataset, activation, "
        "normalization, placement, depth, width) in one compiled program, then evaluate and probe "
        "every model. Writes OUT (one row per seed and learning rate, every metric) and, if asked, "
        "the per-epoch history and (2-D data) decision-boundary grids. All writes are atomic.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True,
                   help="a prepared dataset .npz file (bnstudy prepare-data) or a dataset name, "
                   "generated in memory with default arguments")
    p.add_argument("--activation", required=True, choices=tuple(ACTIVATIONS), help="activation")
    p.add_argument("--norm", required=True, choices=NORMS, help="normalization")
    p.add_argument("--placement", default="pre", choices=PLACEMENTS,
                   help="pre: Linear -> norm -> activation; post: Linear -> activation -> norm")
    p.add_argument("--depth", type=int, default=2, help="hidden layers (>= 1)")
    p.add_argument("--width", type=int, default=64, help="units per hidden layer")
    p.add_argument("--groups", type=int, default=8, help="groups of groupnorm (must divide width)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (init and data order)")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3], help="learning rates")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training split")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="optimizer")
    p.add_argument("--momentum", type=float, default=0.9, help="momentum of sgd")
    p.add_argument("--schedule", default="constant", choices=SCHEDULES, help="learning-rate schedule")
    p.add_argument("--test-batch-sizes", nargs="+", default=["2", "8", "32", "256", "full"],
                   help="test batch sizes of the batch-statistics probe (integers or 'full')")
    p.add_argument("--out", required=True, help="output Parquet file: one row per seed x lr")
    p.add_argument("--history", default=None, help="output Parquet file: one row per seed x lr x epoch")
    p.add_argument("--boundary", default=None,
                   help="output .npz of decision-boundary grids (2-D datasets only)")
    p.set_defaults(func=_run_train)


def _test_batch_sizes(values: list[str]) -> list:
    sizes = []
    for v in values:
        if v == "full":
            sizes.append(v)
        elif v.isdigit() and int(v) >= 2:
            sizes.append(int(v))
        else:
            raise ValueError(f"bad test batch size {v!r}: use integers >= 2 or 'full'")
    return sizes


def _device_name(device) -> str:
    """'NVIDIA H100 80GB HBM3' for a GPU; 'CPU (2 cores, <model name>)' for the host."""
    if device.platform != "cpu":
        return device.device_kind
    import os
    import re
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else None
    return f"CPU ({os.cpu_count()} cores" + (f", {model.group(1).strip()})" if model else ")")


def _run_train(args) -> None:
    import time
    from pathlib import Path

    start = time.perf_counter()
    # Validate everything cheap before loading data or compiling anything.
    from bnstudy import data, models, train

    sizes = _test_batch_sizes(args.test_batch_sizes)
    cfg = train.TrainConfig(seeds=tuple(args.seeds), lrs=tuple(args.lrs), epochs=args.epochs,
                            batch_size=args.batch_size, optimizer=args.optimizer,
                            momentum=args.momentum, schedule=args.schedule)
    ds = data.get(args.data)
    spec = models.ModelSpec(int(ds.x_train.shape[1]), ds.num_classes, args.activation, args.norm,
                            args.placement, args.depth, args.width, args.groups)
    if args.boundary and ds.x_train.shape[1] != 2:
        raise ValueError(f"--boundary needs a 2-D dataset; {ds.name} has {ds.x_train.shape[1]} features")

    import jax
    import numpy as np
    import pandas as pd

    from bnstudy import probes, results

    device = _device_name(jax.devices()[0])
    print(f"{ds.name} {spec} on {device}, "
          f"{len(args.seeds)} seeds x {len(args.lrs)} lrs", file=sys.stderr)
    result = train.train(spec, cfg, ds.x_train, ds.y_train, ds.x_val, ds.y_val)
    metrics = probes.measure(spec, result, ds, sizes, cfg.batch_size)
    n_params = sum(int(np.prod(a.shape[1:])) for a in jax.tree.leaves(result.params))
    ident = dict(dataset=ds.name, activation=spec.activation, norm=spec.norm,
                 placement=spec.placement, depth=spec.depth, width=spec.width, groups=spec.groups)
    lrs = np.tile(np.asarray(cfg.lrs, np.float64), len(cfg.seeds))  # as given, not float32
    runs = pd.DataFrame({**ident, "seed": result.seeds, "lr": lrs,
                         "optimizer": cfg.optimizer, "schedule": cfg.schedule, "epochs": cfg.epochs,
                         "batch_size": cfg.batch_size, **metrics, "n_params": n_params,
                         "device": device,
                         "train_seconds": time.perf_counter() - start})
    if args.history:
        epochs, m = result.history["val_acc"].shape
        hist = pd.DataFrame({**ident, "seed": np.tile(result.seeds, epochs),
                             "lr": np.tile(lrs, epochs),
                             "epoch": np.repeat(np.arange(1, epochs + 1), m),
                             **{k: v.ravel() for k, v in result.history.items()}})
        results.write_parquet(hist.sort_values(["seed", "lr", "epoch"], kind="stable"), args.history)
    if args.boundary:
        grids = probes.boundary(result.graphdef, result.params, result.stats, ds.x_train)
        results.write_npz(args.boundary, seeds=result.seeds, lrs=lrs, x_train=ds.x_train,
                          y_train=ds.y_train, **grids)
    results.write_parquet(runs, args.out)  # last: its existence means the cell is complete
    best = runs.loc[runs["val_acc"].idxmax()] if runs["val_acc"].notna().any() else None
    print(f"wrote {Path(args.out)} ({len(runs)} runs, {time.perf_counter() - start:.1f}s"
          + (f"; best val_acc {best.val_acc:.3f} at seed {best.seed}, lr {best.lr:g})" if best is not None else ")"),
          file=sys.stderr)


def _add_collect(sub) -> None:
    p = sub.add_parser(
        "collect",
        help="aggregate the run files of every cell into metrics and history tables",
        description="Read the run and history files of every cell of the experiments (as laid out "
        "by bnstudy.grid under results/runs/), mark the selected learning rate of each cell and write "
        "one row per (experiment, cell, seed, lr) to METRICS (and its CSV twin) and the per-epoch "
        "curves to HISTORY. Wall-clock columns are left out, so the tables are reproducible.",
    )
    p.add_argument("--experiments", required=True,
                   help="the config's `experiments` section as JSON (which cells each experiment uses)")
    p.add_argument("--metrics", required=True, help="output Parquet file, one row per run")
    p.add_argument("--csv", default=None, help="output CSV twin of METRICS")
    p.add_argument("--history", required=True, help="output Parquet file, one row per run x epoch")
    p.set_defaults(func=_run_collect)


def _run_collect(args) -> None:
    import json

    from bnstudy import results

    metrics, history = results.collect(json.loads(args.experiments))
    results.write_parquet(history, args.history)
    if args.csv:
        results.write_csv(metrics, args.csv)
    results.write_parquet(metrics, args.metrics)
    n_sel = int(metrics["selected"].sum())
    print(f"wrote {args.metrics}: {len(metrics)} rows ({n_sel} selected), "
          f"{metrics.groupby('experiment').size().to_dict()}; {args.history}: {len(history)} rows",
          file=sys.stderr)


def _add_stats(sub) -> None:
    p = sub.add_parser(
        "stats",
        help="per-cell means and intervals, the verdict comparisons, the placement tests (CSV)",
        description="Read the metrics table and write: SUMMARY (one row per experiment and cell: "
        "mean test accuracy over seeds with a 95%% Student-t interval), COMPARISONS (E1/E7 paired "
        "t-tests over seeds and TOST equivalence tests, Holm-corrected, with verdict words) and PLACEMENT (E5).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--metrics", required=True, help="results/metrics.parquet")
    p.add_argument("--summary", required=True, help="output CSV")
    p.add_argument("--comparisons", required=True, help="output CSV")
    p.add_argument("--placement", required=True, help="output CSV")
    p.add_argument("--margin", type=float, default=0.02, help="TOST margin in accuracy (0.02 = 2 points)")
    p.set_defaults(func=_run_stats)


def _run_stats(args) -> None:
    import pandas as pd

    from bnstudy import stats
    from bnstudy.results import write_csv

    df = pd.read_parquet(args.metrics)
    comp = pd.concat([stats.compare(df, e, margin=args.margin) for e in stats.COMPARISONS],
                     ignore_index=True)
    for frame, out in ((stats.summarize(df), args.summary), (comp, args.comparisons),
                       (stats.placement_effects(df), args.placement)):
        write_csv(frame, out)
    print(comp[["experiment", "dataset", "a", "b", "verdict"]].to_string(), file=sys.stderr)


def _add_figure(sub) -> None:
    # bnstudy.figures.FIGURES, spelled out so that `bnstudy --help` does not import matplotlib
    figures = ("e1_heatmaps", "e2_collapse", "e3_batch_dependence", "e4_depth", "e5_placement",
               "e6_boundaries", "e7_dynamics")
    p = sub.add_parser("figure", help="draw one of the paper's figures (vector PDF)",
                       description="Draw one figure of the paper from the metrics table.")
    p.add_argument("name", choices=figures, help="which figure")
    p.add_argument("--metrics", required=True, help="results/metrics.parquet")
    p.add_argument("--history", help="results/history.parquet (e7_dynamics)")
    p.add_argument("--boundaries", nargs="*", default=[],
                   help="results/runs/{dataset}/{cell}.boundary.npz files (e6_boundaries)")
    p.add_argument("--out", required=True, help="output PDF")
    p.set_defaults(func=_run_figure)


def _run_figure(args) -> None:
    from pathlib import Path

    import pandas as pd

    from bnstudy import figures

    df = pd.read_parquet(args.metrics)
    figures.set_style()
    fn = getattr(figures, args.name)
    if args.name == "e6_boundaries":
        boundaries = {(Path(f).parent.name, Path(f).name.removesuffix(".boundary.npz")): f
                      for f in args.boundaries}
        fn(df, boundaries, args.out)
    elif args.name == "e7_dynamics":
        fn(df, pd.read_parquet(args.history), args.out)
    else:
        fn(df, args.out)


def _add_analysis_inputs(p) -> None:
    """The inputs that `tables` and `macros` both read."""
    p.add_argument("--metrics", required=True, help="results/metrics.parquet")
    p.add_argument("--history", required=True, help="results/history.parquet")
    p.add_argument("--stats-dir", required=True, help="folder of `bnstudy stats` CSVs")
    p.add_argument("--benchmarks", required=True, help="folder of the training rules' benchmark TSVs")


def _add_tables(sub) -> None:
    p = sub.add_parser("tables", help="write the paper's booktabs tables (LaTeX fragments)",
                       description="Write main.tex, comparisons.tex, fold.tex, placement.tex, "
                       "dynamics.tex and compute.tex into OUT_DIR.")
    _add_analysis_inputs(p)
    p.add_argument("--out-dir", required=True, help="output folder")
    p.set_defaults(func=_run_tables)


def _run_tables(args) -> None:
    from pathlib import Path

    import pandas as pd

    from bnstudy import tables

    df = pd.read_parquet(args.metrics)
    s = Path(args.stats_dir)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = pd.read_csv(s / "summary.csv")
    written = {
        "main": tables.main_results(summary),
        "comparisons": tables.comparisons(pd.read_csv(s / "comparisons.csv")),
        "fold": tables.fold_affinity(df),
        "placement": tables.placement(pd.read_csv(s / "placement.csv")),
        "dynamics": tables.dynamics(df, pd.read_parquet(args.history)),
        "compute": tables.compute(df, tables.read_benchmarks(args.benchmarks)),
    }
    for name, text in written.items():
        tables.write(text, out / f"{name}.tex")


def _add_macros(sub) -> None:
    p = sub.add_parser("macros", help="write macros.tex: every number and verdict the paper quotes",
                       description="Compute every number and verdict word the paper's prose uses and "
                       "write them as LaTeX macros; also write the run's configuration as YAML.")
    _add_analysis_inputs(p)
    p.add_argument("--config-json", default="{}", help="the workflow's config as JSON")
    p.add_argument("--out", required=True, help="output macros.tex")
    p.add_argument("--config-out", required=True, help="output config.yaml (printed in the appendix)")
    p.set_defaults(func=_run_macros)


def _run_macros(args) -> None:
    import json
    from pathlib import Path

    import pandas as pd
    import yaml

    from bnstudy import report, tables

    df = pd.read_parquet(args.metrics)
    s = Path(args.stats_dir)
    comp = pd.read_csv(s / "comparisons.csv")
    margin = float(comp["margin"].iloc[0]) if len(comp) else 0.02
    m = report.macros(df, pd.read_parquet(args.history), pd.read_csv(s / "summary.csv"), comp,
                      pd.read_csv(s / "placement.csv"), tables.read_benchmarks(args.benchmarks),
                      margin=margin)
    tables.write(report.render(m), args.out)
    config = json.loads(args.config_json)
    tables.write(yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=90), args.config_out)


def _add_paper(sub) -> None:
    p = sub.add_parser("paper", help="compile the paper with latexmk into one PDF",
                       description="Copy paper/ and the generated files into a build folder, run "
                       "`latexmk -pdf` there and copy the PDF to OUT. Fails at once, saying how to "
                       "install TeX, when latexmk is missing.")
    p.add_argument("generated", nargs="*", help="generated files (figures, tables, macros) under ROOT")
    p.add_argument("--root", default="results", help="the generated files keep their path relative to this")
    p.add_argument("--src", default="paper", help="the paper's sources")
    p.add_argument("--build", required=True, help="build folder")
    p.add_argument("--out", required=True, help="output PDF")
    p.add_argument("--log", help="write latexmk's output and the LaTeX warnings here")
    p.add_argument("--strict", action="store_true", help="fail on any LaTeX warning")
    p.set_defaults(func=_run_paper)


def _run_paper(args) -> None:
    from pathlib import Path

    from bnstudy import report

    root = Path(args.root).resolve()
    generated = {str(Path(f).resolve().relative_to(root)): f for f in args.generated}
    warnings = report.compile_paper(args.src, args.build, args.out, generated, log=args.log)
    for w in warnings:
        print(f"LaTeX warning: {w}", file=sys.stderr)
    print(f"wrote {args.out} ({len(warnings)} LaTeX warnings)", file=sys.stderr)
    if warnings and args.strict:
        raise SystemExit(f"{len(warnings)} LaTeX warnings and --strict was given")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnstudy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_prepare_data, _add_train, _add_collect,
                _add_stats, _add_figure, _add_tables, _add_macros, _add_paper):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    from bnstudy import data  # numpy only: cheap

    user_errors = (ValueError, FileNotFoundError, data.DownloadError, data.ChecksumError,
                   data.CorruptFileError)
    try:
        args.func(args)
    except user_errors as e:  # bad input or a failed download: one clear line, no traceback
        parser.exit(2, f"bnstudy {args.command}: error: {e}\n")


if __name__ == "__main__":
    main()
