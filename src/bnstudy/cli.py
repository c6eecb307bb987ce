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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnstudy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_prepare_data,):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
