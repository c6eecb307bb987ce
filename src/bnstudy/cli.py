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
        description="Prepare one dataset (every example, raw, with the sizes of its splits; "
        "each training seed draws its own split from it) and write it atomically. Does nothing "
        "if OUT exists and verifies.",
    )
    p.add_argument("name", help="dataset name (see bnstudy.data.NAMES)")
    p.add_argument("--out", required=True, help="output .npz path")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator (generated sets)")
    p.add_argument(
        "--val-size", type=int, default=None, help="validation examples per seed's split"
    )
    p.add_argument(
        "--test-size",
        type=int,
        default=None,
        help="test examples per seed's split (not for sets with an official test split)",
    )
    p.add_argument(
        "--n-samples", type=int, default=None, help="generated examples (generated sets only)"
    )
    p.add_argument(
        "--noise", type=float, default=None, help="generator noise (generated sets only)"
    )
    p.add_argument("--cache-dir", default=None, help="download cache (downloaded sets only)")
    p.set_defaults(func=_run_prepare_data)


def _run_prepare_data(args) -> None:
    from pathlib import Path

    from bnstudy import data

    out = Path(args.out)
    if out.exists():
        try:
            data.load_pool(out)
            print(f"{out} exists and loads; nothing to do", file=sys.stderr)
            return
        except Exception as e:  # a corrupt file is rebuilt, not trusted
            print(f"{out} exists but does not load ({e}); rebuilding", file=sys.stderr)
    p = data.pool(
        args.name,
        seed=args.seed,
        val_size=args.val_size,
        test_size=args.test_size,
        n_samples=args.n_samples,
        noise=args.noise,
        cache_dir=args.cache_dir,
    )
    data.save(p, out)
    print(f"wrote {out}: {p.meta}", file=sys.stderr)


# The keys of a `bnstudy train --family` object (bnstudy.grid.job_families writes them).
FAMILY_FIELDS = {
    "norm": "the normalization (required)",
    "activations": "its activations, a list (required)",
    "groups": "groupnorm's groups (must divide the width)",
    "batch_probes": "the activations whose models get the batch-statistics probes, at each "
    "cell's selected learning rate (default: all; []: none)",
    "conditional": "true: batch-statistics networks are also evaluated at the training batch "
    "size and as the conditional function with batch-size - 1 fixed training batch-mates (test "
    "accuracy and affinity gap; E8), at each cell's selected learning rate",
    "init_batch_sizes": "also measure every layer's gradient norm at initialization at these "
    "batch sizes (root mean square over batches; E4); by default only the first training step's",
    "boundaries": "with --boundary: the activations whose models (the lowest seed's, at each "
    "cell's selected learning rate) get decision-boundary grids (default: all; []: none)",
    "boundary_mates": "with --boundary: false: no fixed-mates grids (the conditional function "
    "of batch-statistics networks) beside the inference-mode ones (default: true)",
}


def _family(text: str) -> dict:
    """One `--family` value: a JSON object of FAMILY_FIELDS, its names checked."""
    import json

    from bnstudy import vocab

    try:
        family = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not a JSON object ({e}): {text}") from None
    if not isinstance(family, dict) or not {"norm", "activations"} <= set(family):
        raise argparse.ArgumentTypeError(f"needs a JSON object with norm and activations: {text}")
    unknown = sorted(set(family) - set(FAMILY_FIELDS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown key {', '.join(unknown)} in {text}; valid: {', '.join(FAMILY_FIELDS)}"
        )
    if family["norm"] not in vocab.NORMS:
        raise argparse.ArgumentTypeError(
            f"unknown norm {family['norm']!r}; valid: {', '.join(vocab.NORMS)}"
        )
    acts = family["activations"]
    probed = family.get("batch_probes", acts)
    drawn = family.get("boundaries", acts)
    if (
        not isinstance(acts, list)
        or not acts
        or not all(isinstance(a, list) for a in (probed, drawn))
    ):
        raise argparse.ArgumentTypeError(
            f"activations, batch_probes and boundaries must be lists: {text}"
        )
    for a in acts + probed + drawn:
        if a not in vocab.ACTIVATIONS:
            raise argparse.ArgumentTypeError(
                f"unknown activation {a!r}; valid: {', '.join(vocab.ACTIVATIONS)}"
            )
    for name, subset in (("batch_probes", probed), ("boundaries", drawn)):
        if not set(subset) <= set(acts):
            raise argparse.ArgumentTypeError(f"{name} must be among the activations: {text}")
    if not isinstance(family.get("boundary_mates", True), bool):
        raise argparse.ArgumentTypeError(f"boundary_mates must be true or false: {text}")
    return family


# What `bnstudy train` writes per training job: the run table and the long tables beside it.
LONG_TABLES = ("history", "batchstats", "layers")
CELL_FILES = ("run", *LONG_TABLES)


def _add_train(sub) -> None:
    from bnstudy import vocab

    d = vocab.TRAINING_DEFAULTS
    p = sub.add_parser(
        "train",
        help="train the families of one training job and measure every model",
        description="Train the families of one training job (dataset, placement, depth, width, "
        "batch size) one after another in one process: each family (a normalization and its "
        "activations) trains all its activations x seeds x learning rates in one compiled "
        "program; then every model is evaluated and probed (the batch-statistics probes and the "
        "decision boundaries at each cell's selected learning rate: the highest mean validation "
        "accuracy). Writes OUT (one row per model, every "
        "scalar metric) and, if asked, the per-epoch history, the batch-statistics probe, the "
        "per-layer gradient norms and (2-D data) decision-boundary grids. All writes are atomic.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        required=True,
        help="a prepared dataset .npz file (bnstudy prepare-data) or a dataset name, "
        "generated in memory with default arguments",
    )
    p.add_argument(
        "--family",
        required=True,
        action="append",
        type=_family,
        help="one family as a JSON object (repeat for several): "
        + "; ".join(f"{k}: {v}" for k, v in FAMILY_FIELDS.items())
        + ', e.g. \'{"norm": "batchnorm", "activations": ["identity", "relu"]}\'',
    )
    p.add_argument(
        "--placement",
        default="pre",
        choices=tuple(vocab.PLACEMENTS),
        help="; ".join(f"{k}: {v}" for k, v in vocab.PLACEMENTS.items()),
    )
    p.add_argument("--depth", type=int, default=2, help="hidden layers (>= 1)")
    p.add_argument("--width", type=int, default=64, help="units per hidden layer")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=d["seeds"], help="seeds (init and data order)"
    )
    p.add_argument("--lrs", type=float, nargs="+", default=d["lrs"], help="learning rates")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="passes over the training split")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="training batch size")
    p.add_argument(
        "--optimizer", default=d["optimizer"], choices=tuple(vocab.OPTIMIZERS), help="optimizer"
    )
    p.add_argument("--momentum", type=float, default=d["momentum"], help="momentum of sgd")
    p.add_argument(
        "--schedule", default=d["schedule"], choices=vocab.SCHEDULES, help="learning-rate schedule"
    )
    p.add_argument(
        "--test-batch-sizes",
        nargs="+",
        default=[str(b) for b in d["test_batch_sizes"]],
        help=f"test batch sizes of the batch-statistics probe (integers or '{vocab.FULL}')",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output Parquet file: one row per model (activation x seed x lr)",
    )
    p.add_argument(
        "--history", default=None, help="output Parquet file: one row per seed x lr x epoch"
    )
    p.add_argument(
        "--batchstats",
        default=None,
        help="output Parquet file: one row per seed x lr x test batch size x composition",
    )
    p.add_argument(
        "--layers", default=None, help="output Parquet file: one row per seed x lr x layer"
    )
    p.add_argument(
        "--extend-edges",
        type=int,
        default=vocab.TRAINING_DEFAULTS["extend_edges"],
        help="times a family trains again at the next learning rates beyond an edge of the "
        "grid that a cell selected (0: never)",
    )
    p.add_argument(
        "--boundary",
        default=None,
        help="output .npz of decision-boundary grids of the lowest seed's models at their "
        "cells' selected learning rates, on its split (2-D datasets only)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU cores of the job: on the CPU the models are split over this many devices, "
        "which run in parallel (the numbers then equal a one-device run's up to float rounding); "
        "a GPU job trains on its GPU",
    )
    p.set_defaults(func=_run_train)


def _test_batch_sizes(values: list[str]) -> list:
    from bnstudy import vocab

    sizes = []
    for v in values:
        if v == vocab.FULL:
            sizes.append(v)
        elif v.isdigit() and int(v) >= 2:
            sizes.append(int(v))
        else:
            raise ValueError(f"bad test batch size {v!r}: use integers >= 2 or '{vocab.FULL}'")
    return sizes


def cpu_name() -> str:
    """'CPU (2 cores, <model name>)': this machine's processor, as the results' `device` column and
    the benchmarks name it (the model from /proc/cpuinfo where there is one)."""
    import os
    import re
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    model = (
        re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        if cpuinfo.exists()
        else None
    )
    return f"CPU ({os.cpu_count()} cores" + (f", {model.group(1).strip()})" if model else ")")


def _device_name(device) -> str:
    """'NVIDIA H100 80GB HBM3' for a GPU; `cpu_name()` for the host."""
    return device.device_kind if device.platform != "cpu" else cpu_name()


def _process_age() -> float:
    """Seconds since this process started (interpreter start-up and imports included); NaN where
    /proc does not say."""
    import os

    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _run_train(args) -> None:
    import dataclasses
    import json
    import time

    start = time.perf_counter()
    phases = {"startup": _process_age()}  # interpreter, imports and argument parsing
    # Validate everything cheap before loading data or compiling anything.
    from bnstudy import data, models, probes, train

    sizes = _test_batch_sizes(args.test_batch_sizes)
    cfg = train.TrainConfig(
        seeds=tuple(args.seeds),
        lrs=tuple(args.lrs),
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        momentum=args.momentum,
        schedule=args.schedule,
    )
    if args.extend_edges < 0:
        raise ValueError(f"--extend-edges must be >= 0, got {args.extend_edges}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    import jax

    jax.config.update("jax_num_cpu_devices", args.threads)  # before JAX picks its devices
    pool = data.get_pool(args.data)
    splits = {s: data.split(pool, s) for s in cfg.seeds}  # each seed's own split
    ds = splits[min(cfg.seeds)]
    specs = [  # every family's spec, checked before any training
        models.family_spec(
            f, int(ds.x_train.shape[1]), ds.num_classes, args.placement, args.depth, args.width
        )
        for f in args.family
    ]
    # The families that differ only in their norm share one compiled training program: the
    # models carry every such norm's layers and run their own (train.train's `shared`).
    norms = {}
    for spec in specs:
        norms.setdefault(dataclasses.replace(spec, norm="none"), []).append(spec.norm)

    def shared(spec):
        candidates = norms.get(dataclasses.replace(spec, norm="none"), [])
        return dataclasses.replace(spec, norm=tuple(candidates)) if len(candidates) > 1 else None

    n_train = min(len(d.x_train) for d in splits.values())
    for family in args.family:
        probes.check_init_batch_sizes(family.get("init_batch_sizes", []), n_train)
    if args.boundary and ds.x_train.shape[1] != 2:
        raise ValueError(
            f"--boundary needs a 2-D dataset; {ds.name} has {ds.x_train.shape[1]} features"
        )

    import numpy as np
    import pandas as pd

    from bnstudy import results

    device = _device_name(jax.devices()[0])
    phases["load"] = time.perf_counter() - start
    stacked = {
        k: np.stack([getattr(splits[s], k) for s in cfg.seeds])
        for k in ("x_train", "y_train", "x_val", "y_val")
    }

    def train_round(cfg, spec, family, members=()):
        """Train the family (or its activations `members`) at cfg.lrs and measure every model:
        the round (its models and what `probes.measure` gives) and its run table so far."""
        union = shared(spec)
        if members:  # an edge-extension round: the members alone, with the job's norms
            spec = dataclasses.replace(
                spec, activation=members[0] if len(members) == 1 else tuple(members)
            )
            union = union and dataclasses.replace(union, activation=spec.activation)
        result = train.train(spec, cfg, **stacked, shared=union)
        for k, v in result.seconds.items():
            phases[k] = phases.get(k, 0.0) + v
        mark = time.perf_counter()
        scalars, grads, confident = probes.measure(
            spec,
            result,
            splits,
            init_batch_sizes=family.get("init_batch_sizes", []),
            shared=union,  # the job's other families compiled the probes too
        )
        ident = dict(
            dataset=ds.name,
            activation=result.activations,
            norm=spec.norm,
            placement=spec.placement,
            depth=spec.depth,
            width=spec.width,
            batch_size=cfg.batch_size,
            groups=spec.groups,
        )
        lrs = np.tile(np.asarray(cfg.lrs, np.float64), len(result.seeds) // len(cfg.lrs))
        phases["probes"] = phases.get("probes", 0.0) + time.perf_counter() - mark
        return dict(
            cfg=cfg,
            spec=spec,
            union=union,
            result=result,
            ident=ident,
            lrs=lrs,
            scalars=scalars,
            grads=grads,
            confident=confident,
            run=results.run_frame(ident, result.seeds, lrs, scalars),
        )

    def finish_round(r, family, chosen):
        """The round's probes that an output reads at the selected learning rate only (`chosen`:
        per model, whether it is its cell's; results.select_lr over the family's rounds): the
        batch-statistics probes and the decision-boundary grids; then its tables and grids."""
        cfg, spec, union, result = r["cfg"], r["spec"], r["union"], r["result"]
        mark = time.perf_counter()
        cond, batch = {}, []
        if spec.uses_batch_stats:
            conditional = family.get("conditional")
            own_size = [cfg.batch_size] if conditional and cfg.batch_size not in sizes else []
            probed = np.isin(result.activations, family.get("batch_probes", spec.activations))
            cond, batch = probes.measure_batch_stats(
                spec,
                result,
                splits,
                np.flatnonzero(chosen & probed),
                own_size + sizes,  # a strong-form family is also tested at its own batch size
                r["confident"],
                conditional=cfg.batch_size if conditional else None,
                shared=union,
            )
        n_params = sum(int(np.prod(a.shape[1:])) for a in jax.tree.leaves(result.params))
        scalars = {
            "optimizer": cfg.optimizer,
            "schedule": cfg.schedule,
            "epochs": cfg.epochs,
            **r["scalars"],
            **cond,
            "n_params": n_params,
            "device": device,
            "train_seconds": time.perf_counter() - family_start,
        }
        lrs = r["lrs"]
        tables = results.run_tables(
            r["ident"], result.seeds, lrs, scalars, batch, r["grads"], result.history
        )
        # The lowest seed's models at their cells' selected rates (E6 draws them), of the
        # activations whose grids are read
        first = np.flatnonzero((result.seeds == min(cfg.seeds)) & chosen)
        first = first[
            np.isin(result.activations[first], family.get("boundaries", family["activations"]))
        ]
        grids = {}
        if args.boundary:
            grids = dict(  # which models the grids are of (none where no output reads them)
                seeds=result.seeds[first],
                lrs=lrs[first],
                activations=result.activations[first],
                norms=np.full(len(first), spec.norm),
                groups=np.full(len(first), spec.groups),
            )
        if args.boundary and len(first):
            graphdef, params, stats, norm = probes.shared_view(spec, result, union)
            mates = family.get("boundary_mates", True)
            grids |= probes.boundary(
                graphdef,
                probes.unstack(params, first),
                probes.unstack(stats, first),
                ds.x_train,
                mates=probes.draw_mates(ds.x_train, cfg.batch_size) if mates else None,
                norm=norm,
            )
        phases["probes"] = phases.get("probes", 0.0) + time.perf_counter() - mark
        return tables, grids

    rounds = []
    for family, spec in zip(args.family, specs):
        family_start = start if not rounds else time.perf_counter()  # the first: the job's start
        print(
            f"{ds.name} {spec} on {device}, {len(spec.activations)} activations x "
            f"{len(args.seeds)} seeds x {len(args.lrs)} lrs, at {time.perf_counter() - start:.1f}s",
            file=sys.stderr,
        )
        # A cell whose selected rate is an edge of the rates trained so far: its activation
        # trains again at the next rates beyond that edge (results.edge_extension), up to
        # --extend-edges times. (Its Linear weights are those of the family: they depend on the
        # seed only.) A round carries the job's candidate norms as its family does, so the
        # job's rounds of the same activations share one compiled program, whatever their norm
        # and rates.
        own = [train_round(cfg, spec, family)]
        tried = list(cfg.lrs)
        for _ in range(args.extend_edges):
            run = pd.concat([r["run"] for r in own], ignore_index=True)
            more, members = results.edge_extension(run, tried)
            if not more:
                break
            print(
                f"{', '.join(members)} selected an edge of {sorted(tried)}: training at {more}",
                file=sys.stderr,
            )
            own.append(
                train_round(dataclasses.replace(cfg, lrs=tuple(more)), spec, family, members)
            )
            tried += more
        # The rates the study reports each cell at, known now that its rounds are done
        chosen = results.selected(pd.concat([r["run"] for r in own], ignore_index=True))
        ends = np.cumsum([len(r["run"]) for r in own])[:-1]
        rounds += [finish_round(r, family, c) for r, c in zip(own, np.split(chosen, ends))]
    tables = {
        name: pd.concat([t[name] for t, _ in rounds], ignore_index=True) for name in rounds[0][0]
    }
    mark = time.perf_counter()
    for name in LONG_TABLES:
        if getattr(args, name):
            results.write_parquet(tables[name], getattr(args, name))
    if args.boundary:
        grids = _merge(rounds, ds.x_train)
        results.write_npz(args.boundary, x_train=ds.x_train, y_train=ds.y_train, **grids)
    results.write_parquet(tables["run"], args.out)  # last: its existence means the job is complete
    phases["write"] = time.perf_counter() - mark
    print(
        f"wrote {args.out} ({len(tables['run'])} runs, {time.perf_counter() - start:.1f}s)",
        file=sys.stderr,
    )
    print("PHASES " + json.dumps({k: round(v, 3) for k, v in phases.items()}), file=sys.stderr)


def _merge(rounds, x_train) -> dict:
    """The decision-boundary grids of every round, stacked over their models. Grids the same in
    every round (the grid, the batch-mates) are kept once; `pred_batch` exists where a round drew
    fixed-mates grids, and is -1 for the other models. A job whose families draw no grid (no
    output reads them) gets the grid and no models."""
    import numpy as np

    from bnstudy import probes

    grids = [g for _, g in rounds]
    drawn = [g for g in grids if "xx" in g]
    xx, yy = (drawn[0]["xx"], drawn[0]["yy"]) if drawn else probes.boundary_grid(x_train)
    shared = {"xx": xx, "yy": yy}
    for g in grids:  # a round that drew none: no models
        g.setdefault("pred_inference", np.zeros((0, *xx.shape), np.int64))
    with_mates = [g for g in grids if "batch_mates" in g]
    if with_mates:
        shared["batch_mates"] = with_mates[0]["batch_mates"]
        shape = with_mates[0]["pred_batch"].shape[1:]
        for g in grids:
            g.setdefault("pred_batch", np.full((len(g["seeds"]), *shape), -1))
    per_model = [k for k in grids[0] if k not in ("xx", "yy", "batch_mates")]
    return shared | {k: np.concatenate([g[k] for g in grids]) for k in per_model}


def _add_reference(sub) -> None:
    p = sub.add_parser(
        "reference",
        help="fit the convex linear reference on each seed's split of a dataset",
        description="Multinomial logistic regression fitted to convergence (L-BFGS, full batch, "
        "its regularization chosen on the validation split) on each seed's split of DATA, and on "
        "2-D two-class data the best half-plane; one row per seed to OUT (Parquet).",
    )
    p.add_argument("--data", required=True, help="a prepared dataset .npz file or a dataset name")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="the training seeds")
    p.add_argument("--out", required=True, help="output Parquet file")
    p.set_defaults(func=_run_reference)


def _run_reference(args) -> None:
    import time

    import pandas as pd

    from bnstudy import data, reference, results

    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds must be distinct, got {args.seeds}")
    pool = data.get_pool(args.data)
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        fit = reference.fit(data.split(pool, seed))
        rows.append({"dataset": pool.name, "seed": seed, **fit})
        print(f"seed {seed}: {fit} ({time.perf_counter() - start:.1f}s)", file=sys.stderr)
    results.write_parquet(pd.DataFrame(rows), args.out)


def _add_collect(sub) -> None:
    p = sub.add_parser(
        "collect",
        help="aggregate the files of every cell into the study's tables",
        description="Read the files of every cell of the experiments, mark the selected learning "
        "rate of each cell, and write one row per (experiment, cell, seed, lr) to METRICS (and its "
        "CSV twin) and the per-epoch, per-test-batch and per-layer tables beside it. Wall-clock "
        "columns are left out, so the tables are reproducible.",
    )
    p.add_argument(
        "--experiments",
        required=True,
        help="the config's `experiments` section as JSON (which cells each experiment uses)",
    )
    p.add_argument(
        "--training",
        default=None,
        help="the config's `training` section as JSON (the batch size and groups of cells whose "
        "blocks do not set them; absent: the defaults)",
    )
    for kind in CELL_FILES:
        p.add_argument(f"--{kind}-files", nargs="*", default=[], help=f"the cells' {kind} files")
    p.add_argument("--metrics", required=True, help="output Parquet file, one row per run")
    p.add_argument("--csv", default=None, help="output CSV twin of METRICS")
    p.add_argument("--history", required=True, help="output Parquet file, one row per run x epoch")
    p.add_argument(
        "--batchstats", required=True, help="output Parquet file, one row per run x test batch"
    )
    p.add_argument("--layers", required=True, help="output Parquet file, one row per run x layer")
    p.add_argument(
        "--reference-files", nargs="*", default=[], help="the datasets' linear-reference files"
    )
    p.add_argument(
        "--reference", default=None, help="output Parquet file, one row per dataset x seed"
    )
    p.set_defaults(func=_run_collect)


def _run_collect(args) -> None:
    import json

    from bnstudy import results

    files = {kind: getattr(args, f"{kind}_files") for kind in CELL_FILES}
    tables = results.collect(
        json.loads(args.experiments), files, json.loads(args.training) if args.training else None
    )
    for name in LONG_TABLES:
        results.write_parquet(tables[name], getattr(args, name))
    if args.csv:
        results.write_csv(tables["metrics"], args.csv)
    if args.reference:
        results.write_parquet(results.read_reference(args.reference_files), args.reference)
    results.write_parquet(tables["metrics"], args.metrics)
    print(f"wrote {args.metrics}: {len(tables['metrics'])} rows", file=sys.stderr)


def _add_analysis(p) -> None:
    from bnstudy import vocab

    d = vocab.ANALYSIS_DEFAULTS
    p.add_argument(
        "--alpha", type=float, default=d["alpha"], help="level of every test, after correction"
    )
    p.add_argument(
        "--gap-fraction",
        type=float,
        default=d["gap_fraction"],
        help="margin of 'no better than linear': recovers less than this share of the gap "
        "between the linear reference and ReLU + BatchNorm",
    )
    p.add_argument(
        "--min-gap",
        type=float,
        default=d["min_gap"],
        help="a dataset discriminates when its gap is significantly larger than this (accuracy)",
    )


def _add_stats(sub) -> None:
    p = sub.add_parser(
        "stats",
        help="per-cell means and intervals, the claims' tests, the placement and batch "
        "composition tests (CSV)",
        description="Read the metrics table and the linear reference and write: SUMMARY (one row "
        "per experiment and cell: mean test accuracy over seeds with a 95%% Student-t interval), "
        "GAPS (E1: the nonlinearity gap per setting, one-sided paired t-test, Holm over settings), "
        "SHARES (E1: the share of the gap each cell recovers, Fieller interval, verdict), "
        "PLACEMENT (E5) and COMPOSITION (E3: one-class minus random test batches).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--metrics", required=True, help="results/metrics.parquet")
    p.add_argument("--batchstats", required=True, help="results/batchstats.parquet")
    p.add_argument("--reference", required=True, help="results/reference.parquet")
    p.add_argument("--summary", required=True, help="output CSV")
    p.add_argument("--gaps", required=True, help="output CSV")
    p.add_argument("--shares", required=True, help="output CSV")
    p.add_argument("--placement", required=True, help="output CSV")
    p.add_argument("--composition", required=True, help="output CSV")
    _add_analysis(p)
    p.set_defaults(func=_run_stats)


def _run_stats(args) -> None:
    import pandas as pd

    from bnstudy import stats
    from bnstudy.results import write_csv

    tables = stats.study(
        pd.read_parquet(args.metrics),
        pd.read_parquet(args.reference),
        pd.read_parquet(args.batchstats),
        f=args.gap_fraction,
        alpha=args.alpha,
        min_gap=args.min_gap,
    )
    for name, frame in tables.items():
        write_csv(frame, getattr(args, name))
    shares = tables["shares"]
    print(tables["gaps"].to_string(), file=sys.stderr)
    print(
        shares[["dataset", "activation", "norm", "share", "verdict"]].to_string(), file=sys.stderr
    )


def _add_inputs(p) -> None:
    """One option per study table a figure, table or the macros may read (vocab.INPUTS)."""
    from bnstudy import vocab

    for name in vocab.INPUTS:
        many = name in ("boundaries", "benchmarks")
        p.add_argument(
            f"--{name}", nargs="*" if many else None, help=f"the {name} file{'s' if many else ''}"
        )


def _inputs(args) -> dict:
    from bnstudy import results, vocab

    return results.read_inputs(
        {k: getattr(args, k) for k in vocab.INPUTS if getattr(args, k) is not None}
    )


def _add_output(sub, kind: str) -> None:
    from bnstudy import vocab

    names = vocab.FIGURES if kind == "figure" else vocab.TABLES
    p = sub.add_parser(
        kind,
        help=f"draw one of the paper's {kind}s ({'vector PDF' if kind == 'figure' else 'LaTeX'})",
        description=f"Make one {kind} of the paper from the study tables it reads "
        "(bnstudy.vocab.OUTPUTS says which).",
    )
    p.add_argument("name", choices=names, help=f"which {kind}")
    _add_inputs(p)
    p.add_argument("--out", required=True, help="output file")
    p.set_defaults(func=_run_figure if kind == "figure" else _run_table)


def _run_figure(args) -> None:
    from bnstudy import figures

    figures.draw(args.name, _inputs(args), args.out)


def _run_table(args) -> None:
    from bnstudy import tables
    from bnstudy.results import write_text

    write_text(tables.make(args.name, _inputs(args)), args.out)


def _add_macros(sub) -> None:
    from bnstudy import vocab

    p = sub.add_parser(
        "macros",
        help="write macros.tex: every number and verdict the paper quotes",
        description="Compute every number and verdict word the paper's prose uses and "
        "write them as LaTeX macros; also write the list of the results sections of the "
        "configured experiments and the run's configuration as YAML.",
    )
    _add_inputs(p)
    _add_analysis(p)
    p.add_argument(
        "--experiments",
        nargs="+",
        required=True,
        choices=tuple(vocab.EXPERIMENTS),
        help="the experiments the config holds (their sections go into the paper)",
    )
    p.add_argument("--config-json", default="{}", help="the workflow's config as JSON")
    p.add_argument("--out", required=True, help="output macros.tex")
    p.add_argument(
        "--sections-out", required=True, help="output sections.tex (the results sections)"
    )
    p.add_argument(
        "--config-out", required=True, help="output config.yaml (printed in the appendix)"
    )
    p.set_defaults(func=_run_macros)


def _run_macros(args) -> None:
    import json

    import yaml

    from bnstudy import macros
    from bnstudy.results import write_text

    m = macros.macros(
        _inputs(args), gap_fraction=args.gap_fraction, alpha=args.alpha, min_gap=args.min_gap
    )
    write_text(macros.render(m, args.experiments), args.out)
    write_text(macros.sections(args.experiments), args.sections_out)
    config = json.loads(args.config_json)
    write_text(
        yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=90), args.config_out
    )


def _add_paper(sub) -> None:
    p = sub.add_parser(
        "paper",
        help="compile the paper with latexmk into one PDF",
        description="Copy paper/ and the generated files into a build folder, run "
        "`latexmk -pdf` there and copy the PDF to OUT. Fails at once, saying how to "
        "install TeX, when latexmk is missing.",
    )
    p.add_argument(
        "generated", nargs="*", help="generated files (figures, tables, macros) under ROOT"
    )
    p.add_argument(
        "--root", default="results", help="the generated files keep their path relative to this"
    )
    p.add_argument("--src", default="paper", help="the paper's sources")
    p.add_argument("--build", required=True, help="build folder")
    p.add_argument("--out", required=True, help="output PDF")
    p.add_argument("--log", help="write latexmk's output and the LaTeX warnings here")
    p.add_argument("--strict", action="store_true", help="fail on any LaTeX warning")
    p.set_defaults(func=_run_paper)


def _run_paper(args) -> None:
    from pathlib import Path

    from bnstudy import latex

    root = Path(args.root).resolve()
    generated = {str(Path(f).resolve().relative_to(root)): f for f in args.generated}
    warnings = latex.compile_paper(args.src, args.build, args.out, generated, log=args.log)
    for w in warnings:
        print(f"LaTeX warning: {w}", file=sys.stderr)
    print(f"wrote {args.out} ({len(warnings)} LaTeX warnings)", file=sys.stderr)
    if warnings and args.strict:
        raise SystemExit(f"{len(warnings)} LaTeX warnings and --strict was given")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnstudy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_prepare_data,
        _add_train,
        _add_reference,
        _add_collect,
        _add_stats,
        _add_macros,
        _add_paper,
    ):
        add(sub)
    for kind in ("figure", "table"):
        _add_output(sub, kind)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    from bnstudy import data  # numpy only: cheap

    user_errors = (
        ValueError,
        FileNotFoundError,
        data.DownloadError,
        data.ChecksumError,
        data.CorruptFileError,
    )
    try:
        args.func(args)
    except user_errors as e:  # bad input or a failed download: one clear line, no traceback
        parser.exit(2, f"bnstudy {args.command}: error: {e}\n")


if __name__ == "__main__":
    main()
