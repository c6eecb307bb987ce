"""The study's grid: a validated config -> the cells to train, their settings, their files.

A *cell* is one architecture on one dataset at one training batch size: (dataset, activation,
norm, placement, depth, width, batch size, groupnorm's groups). A *family* is the cells that
differ only in their activation; one compiled program trains every cell x seed x learning rate
of a family (bnstudy.models: the activation is chosen per model). A training *job* is the
families that differ only in their normalization (and groupnorm's groups): (dataset, placement,
depth, width, batch size). One process trains them one after another, with the settings of the
config's `training:` section (plus its per-dataset overrides), and writes one file of each kind
per job. So a cell is trained once whatever experiments use it; compilation is paid once per
family instead of once per cell, and the process start-up, imports and data loading once per
job instead of once per family.

An experiment (E1..E7) is a list of blocks; a block is the product of its lists
(datasets x activations x norms x placements x depths x widths); the experiment's sub-grid is
the union of its blocks.

Pure functions over the config dict (after JSON-schema validation), no JAX: the Snakefile
imports this module, so it must stay cheap. `check` holds the rules the schema cannot express.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from bnstudy import data, vocab

TRAINING_KEYS = tuple(vocab.TRAINING_DEFAULTS)
NO_GROUPS = vocab.TRAINING_DEFAULTS["groups"]  # the `groups` of a cell whose norm is not groupnorm
RESOURCE_KEYS = ("threads", "mem_mb", "runtime")

# File layout of one training job (paths relative to the working directory, the repository
# root); a cell's files are its job's (Cell.path).
JOB = "{placement}-d{depth}-w{width}-b{batch_size}"
RUN = "results/runs/{dataset}/" + JOB + ".parquet"  # one row per cell x seed x lr: scalars
HISTORY = "results/runs/{dataset}/" + JOB + ".history.parquet"  # ... x epoch
BATCHSTATS = "results/runs/{dataset}/" + JOB + ".batchstats.parquet"  # ... x test batch
LAYERS = "results/runs/{dataset}/" + JOB + ".layers.parquet"  # ... x layer
BOUNDARY = "results/runs/{dataset}/" + JOB + ".boundary.npz"  # 2-D datasets only
TRAIN_LOG = "results/logs/train/{dataset}/" + JOB + ".log"
TRAIN_BENCHMARK = "results/benchmarks/train/{dataset}/" + JOB + ".tsv"
DATA = "results/data/{dataset}.npz"
REFERENCE = "results/reference/{dataset}.parquet"  # the convex linear reference, one row per seed
REFERENCE_LOG = "results/logs/reference/{dataset}.log"

# The study's tables (bnstudy collect, bnstudy stats) by the input names of vocab.INPUTS.
STUDY_FILES = {
    "metrics": "results/metrics.parquet",
    "history": "results/history.parquet",
    "batchstats": "results/batchstats.parquet",
    "layers": "results/layers.parquet",
    "reference": "results/reference.parquet",
    "summary": "results/stats/summary.csv",
    "gaps": "results/stats/gaps.csv",
    "shares": "results/stats/shares.csv",
    "placement": "results/stats/placement.csv",
    "composition": "results/stats/composition.csv",
}
METRICS_CSV = "results/metrics.csv"
MACROS = "results/tex/macros.tex"
CONFIG_COPY = "results/tex/config.yaml"
SECTIONS = "results/tex/sections.tex"
PAPER = "results/paper.pdf"

WILDCARDS = {
    "dataset": "|".join(vocab.DATASETS),
    "placement": "|".join(vocab.PLACEMENTS),
    "depth": r"[1-9][0-9]*",
    "width": r"[1-9][0-9]*",
    "batch_size": r"[1-9][0-9]*",
}


class ConfigError(ValueError):
    """A config that passes the schema but cannot be run; the message names the key."""


@dataclass(frozen=True, order=True)
class Cell:
    dataset: str
    activation: str
    norm: str
    placement: str
    depth: int
    width: int
    batch_size: int
    groups: int  # groupnorm's group count; vocab's default for every other norm

    def path(self, pattern: str = RUN) -> str:
        """The file `pattern` of this cell (of its training job, for the job patterns above)."""
        return pattern.format(**self.__dict__)

    @property
    def wildcards(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


def _blocks(config: dict):
    """Yield (key, experiment, block) for every block, key like "experiments.E1[0]"."""
    for name, blocks in config["experiments"].items():
        for i, block in enumerate(blocks):
            yield f"experiments.{name}[{i}]", name, block


def same_network(activation: str, norm: str) -> bool:
    """Whether placing the norm before or after the activation gives the same network: with the
    identity activation, or with no norm. Such a cell is trained once, as placement "pre"."""
    return activation == "identity" or norm == "none"


def cells(config: dict) -> dict[Cell, tuple[str, ...]]:
    """Every cell the config asks for -> the experiments that use it (sorted, deduplicated).

    A block's optional `batch_sizes` and `groups` default to the dataset's training settings;
    `groups` applies to groupnorm only (other norms carry vocab's default, so they are one cell).
    A cell whose placements are the same network (`same_network`) is listed once, as "pre".

    Computed once per config (the rules ask for every training job's families; the full
    study's grid has thousands of cells): a new dict each call, over a cached expansion."""
    return dict(_cells(json.dumps(config, sort_keys=True)))


@functools.lru_cache(maxsize=8)
def _cells(config_json: str) -> dict[Cell, tuple[str, ...]]:
    config = json.loads(config_json)
    members: dict[Cell, set[str]] = {}
    for _, name, b in _blocks(config):
        for dataset, activation, norm, placement, depth, width in itertools.product(
            b["datasets"], b["activations"], b["norms"], b["placements"], b["depths"], b["widths"]
        ):
            settings = training(config, dataset)
            where = "pre" if same_network(activation, norm) else placement
            groups = b.get("groups", [settings["groups"]]) if norm == "groupnorm" else [NO_GROUPS]
            for batch_size in b.get("batch_sizes", [settings["batch_size"]]):
                for g in groups:
                    cell = Cell(
                        dataset,
                        activation,
                        norm,
                        where,
                        int(depth),
                        int(width),
                        int(batch_size),
                        int(g),
                    )
                    members.setdefault(cell, set()).add(name)
    return {
        cell: tuple(sorted(members[cell], key=list(vocab.EXPERIMENTS).index))
        for cell in sorted(members)
    }


JOB_KEYS = ("dataset", "placement", "depth", "width", "batch_size")


def jobs(config: dict) -> dict[tuple, dict[Cell, tuple[str, ...]]]:
    """Every training job (JOB_KEYS) -> its cells and the experiments that use each, in the
    grid's order (a new dict each call, over a cached grouping: see `cells`)."""
    return dict(_jobs(json.dumps(config, sort_keys=True)))


@functools.lru_cache(maxsize=8)
def _jobs(config_json: str) -> dict[tuple, dict[Cell, tuple[str, ...]]]:
    out: dict[tuple, dict[Cell, tuple[str, ...]]] = {}
    for c, experiments in _cells(config_json).items():
        out.setdefault(tuple(getattr(c, k) for k in JOB_KEYS), {})[c] = experiments
    return out


def _job_key(wildcards) -> tuple:
    return tuple(
        getattr(wildcards, k) if k in ("dataset", "placement") else int(getattr(wildcards, k))
        for k in JOB_KEYS
    )


def datasets(config: dict) -> list[str]:
    """The datasets the grid uses, in canonical order."""
    used = {cell.dataset for cell in cells(config)}
    return [d for d in vocab.DATASETS if d in used]


def training(config: dict, dataset: str) -> dict:
    """The training settings of `dataset`: the defaults (vocab.TRAINING_DEFAULTS), the
    `training:` section over them, and its per-dataset override over that."""
    section = config.get("training", {})
    settings = dict(vocab.TRAINING_DEFAULTS)
    settings.update({k: v for k, v in section.items() if k in TRAINING_KEYS})
    settings.update(section.get("per_dataset", {}).get(dataset, {}))
    return settings


def analysis(config: dict) -> dict:
    """The `analysis:` settings (alpha, gap_fraction) over their defaults (vocab.ANALYSIS_DEFAULTS)."""
    return {**vocab.ANALYSIS_DEFAULTS, **config.get("analysis", {})}


def outputs(config: dict) -> list:
    """The figures and tables (vocab.Output) of the experiments the config holds."""
    return vocab.outputs_for(config["experiments"])


def resources(config: dict, dataset: str) -> dict:
    """threads, mem_mb, runtime (minutes per family) of the training jobs on `dataset`."""
    section = config["resources"]
    res = {k: section[k] for k in RESOURCE_KEYS}
    res.update(section.get("per_dataset", {}).get(dataset, {}))
    return res


def job_runtime(config: dict, wildcards) -> int:
    """The runtime (minutes) of the training job named by a rule's wildcards: the dataset's
    runtime per family times the job's families, which it trains one after another."""
    per_family = resources(config, wildcards.dataset)["runtime"]
    return per_family * len(job_families(config, wildcards))


# The expected seconds of a job on one core of the 2-core benchmark machine (docs/speed.md),
# fitted to default-v1's jobs at d00efea. A training job (within 20% but for one of 9): each
# family costs a constant (its compilation and probes) that grows with its depth, and each model
# a constant per training step and layer (at width 64; wider layers cost more). Since then the
# families with the same activations share one compiled program, so the fit overestimates the
# many-family jobs; the order it gives still ends the training at its packing bound. A reference job: a
# constant per training example and seed (within about a third on its 4 jobs).
COST_PER_FAMILY, COST_PER_FAMILY_LAYER, COST_PER_MODEL_STEP_LAYER = 5.9, 0.5, 3.2e-5
COST_PER_REFERENCE_EXAMPLE = 5e-4


def job_cost(config: dict, wildcards) -> float:
    """The expected seconds of the training job named by a rule's wildcards (COST_*): the
    rule's priority, so that the costliest jobs start first and no long job is left to run
    alone at the end of a study (a reference job's priority is in the same unit)."""
    s = training(config, wildcards.dataset)
    steps = s["epochs"] * (_train_size(config, wildcards.dataset) // int(wildcards.batch_size))
    layers = int(wildcards.depth) + 1
    per_model = COST_PER_MODEL_STEP_LAYER * steps * layers * max(1, int(wildcards.width) / 64) ** 2
    cost = sum(
        COST_PER_FAMILY
        + COST_PER_FAMILY_LAYER * layers
        + per_model * len(f["activations"]) * len(s["seeds"]) * len(s["lrs"])
        for f in job_families(config, wildcards)
    )
    return round(cost, 1)


def reference_cost(config: dict, dataset: str) -> float:
    """The expected seconds of the reference job on `dataset` (COST_*): the reference rule's
    priority, so that the longest starts first."""
    seeds = training(config, dataset)["seeds"]
    return round(COST_PER_REFERENCE_EXAMPLE * _train_size(config, dataset) * len(seeds), 1)


def _train_size(config: dict, dataset: str) -> int:
    return data.train_size(dataset, **config.get("data", {}).get(dataset, {}))


def job_families(config: dict, wildcards) -> list[dict]:
    """The families of the training job named by a rule's wildcards, as `bnstudy train --family`
    specifications (norm order of the vocabulary, then groups):

    - `norm`, `groups` (groupnorm only) and `activations`, in the vocabulary's order;
    - `batch_probes`: the activations whose cells an experiment of vocab.BATCH_PROBE_EXPERIMENTS
      uses (the batch-statistics probes run only where an output reads them);
    - `conditional`: a batch-statistics family of the strong-form experiment
      (vocab.BATCH_SIZE_EXPERIMENT), also evaluated at its own training batch size and as the
      conditional function of fixed batch-mates;
    - `init_batch_sizes`: a family of the depth experiment (vocab.DEPTH_EXPERIMENT) has its
      gradients at initialization measured at the training section's `init_batch_sizes`;
    - `boundaries` and `boundary_mates` (2-D datasets): the activations whose decision-boundary
      grids the boundary figure reads (cells of vocab.BOUNDARY_EXPERIMENT, and, with it in the
      config, batch-statistics cells of the strong-form experiment trained at
      vocab.CONDITIONAL_BATCH), and whether it reads their fixed-mates grids (those cells'
      only): no job draws grids nothing reads.
    """
    members: dict[tuple, dict[str, set[str]]] = {}  # (norm, groups) -> activation -> experiments
    for c, experiments in jobs(config).get(_job_key(wildcards), {}).items():
        members.setdefault((c.norm, c.groups), {}).setdefault(c.activation, set()).update(
            experiments
        )
    init_sizes = training(config, wildcards.dataset)["init_batch_sizes"]
    two_d = vocab.DATASETS[wildcards.dataset].two_d
    drawn = vocab.BOUNDARY_EXPERIMENT in config["experiments"]
    mates_read = drawn and int(wildcards.batch_size) == vocab.CONDITIONAL_BATCH
    specs = []
    for (norm, groups), by_activation in sorted(
        members.items(), key=lambda kv: (list(vocab.NORMS).index(kv[0][0]), kv[0][1])
    ):
        activations = [a for a in vocab.ACTIVATIONS if a in by_activation]
        experiments = set().union(*by_activation.values())
        spec = {"norm": norm, "activations": activations}
        if norm == "groupnorm":
            spec["groups"] = groups
        spec["batch_probes"] = [
            a for a in activations if by_activation[a] & set(vocab.BATCH_PROBE_EXPERIMENTS)
        ]
        if vocab.BATCH_SIZE_EXPERIMENT in experiments and norm in vocab.BATCH_STAT_NORMS:
            spec["conditional"] = True
        if vocab.DEPTH_EXPERIMENT in experiments and init_sizes:
            spec["init_batch_sizes"] = list(init_sizes)
        if two_d:
            mates = mates_read and norm in vocab.BATCH_STAT_NORMS
            spec["boundaries"] = [
                a
                for a in activations
                if vocab.BOUNDARY_EXPERIMENT in by_activation[a]
                or (mates and vocab.BATCH_SIZE_EXPERIMENT in by_activation[a])
            ]
            spec["boundary_mates"] = mates
        specs.append(spec)
    return specs


def train_options(config: dict, wildcards) -> dict[str, str]:
    """The `bnstudy train` option values of one training job, as strings for the rule's shell
    command: the dataset's training settings and one `--family` per family (job_families)."""
    s = training(config, wildcards.dataset)
    return {
        "families": " ".join(
            "--family " + shlex.quote(json.dumps(f, separators=(",", ":")))
            for f in job_families(config, wildcards)
        ),
        "seeds": " ".join(str(x) for x in s["seeds"]),
        "lrs": " ".join(repr(float(x)) for x in s["lrs"]),
        "epochs": str(s["epochs"]),
        "optimizer": s["optimizer"],
        "momentum": repr(float(s["momentum"])),
        "schedule": s["schedule"],
        "test_batch_sizes": " ".join(str(x) for x in s["test_batch_sizes"]),
        "extend_edges": str(s["extend_edges"]),
    }


def boundary_option(output) -> str:
    """`--boundary PATH` when the rule's outputs include decision-boundary grids (2-D data)."""
    return f"--boundary {output.boundary}" if "boundary" in output.keys() else ""


def paths(cells: dict, pattern: str, experiment: str | None = None) -> list[str]:
    """The files `pattern` (e.g. RUN, BOUNDARY) of the cells, or of one experiment's cells,
    each once (the cells of one training job share its files). BOUNDARY exists only for 2-D
    datasets, so only their cells are listed for it."""
    found = [
        cell.path(pattern)
        for cell, members in cells.items()
        if (experiment is None or experiment in members)
        and (pattern != BOUNDARY or cell.dataset in vocab.TWO_D)
    ]
    return list(dict.fromkeys(found))


def output_inputs(config: dict, output) -> dict[str, str | list[str]]:
    """The files a figure or table (vocab.Output) reads, by input name: the study tables, the
    decision-boundary grids of the 2-D cells, the training benchmark files of every cell."""
    members = cells(config)
    files = {
        # every 2-D cell's: E6 also draws E8's small-batch networks
        "boundaries": paths(members, BOUNDARY) if "boundaries" in output.inputs else [],
        "benchmarks": paths(members, TRAIN_BENCHMARK),
    }
    return {name: files.get(name, STUDY_FILES.get(name)) for name in output.inputs}


def cli_options(named) -> str:
    """`--name path ...` for each entry of a rule's named input (snakemake's `input`, or a dict)."""
    parts = []
    for name in named.keys():
        value = named[name]
        values = [value] if isinstance(value, str) else list(value)
        parts.append(f"--{name} " + " ".join(shlex.quote(str(v)) for v in values))
    return " ".join(parts)


def prepare_options(config: dict, dataset: str) -> str:
    """`bnstudy prepare-data` options of `dataset` from the `data:` section."""
    opts = config.get("data", {}).get(dataset, {})
    flags = {
        "seed": "--seed",
        "val_size": "--val-size",
        "test_size": "--test-size",
        "n_samples": "--n-samples",
        "noise": "--noise",
    }
    return " ".join(f"{flags[k]} {opts[k]}" for k in flags if k in opts)


def use_gpu(config: dict) -> bool:
    """Whether training jobs ask for a GPU: config resources.gpu, or (auto) whether JAX can use
    a local NVIDIA GPU: `nvidia-smi -L` lists one and a JAX CUDA plugin is installed."""
    setting = config["resources"]["gpu"]
    if setting != "auto":
        return bool(setting)
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "" or shutil.which("nvidia-smi") is None:
        return False
    from importlib.util import find_spec

    if not any(find_spec(m) for m in ("jax_cuda12_plugin", "jax_cuda13_plugin")):
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def job_environment(config: dict) -> dict[str, str]:
    """Environment of every job: the JAX compilation cache and the GPU memory policy.

    - The persistent compilation cache under results/ lets reruns and sibling jobs with the same
      programs skip compilation; small CPU programs are cached only with the two minimums lowered.
    - JAX preallocates 75% of a GPU's memory per process by default, so a second job on the same
      GPU would run out of memory: jobs allocate what they use instead.
    """
    return {
        "JAX_COMPILATION_CACHE_DIR": config["resources"]["jax_cache"],
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    }


def check(config: dict) -> None:
    """The rules the JSON schema cannot express. Raises ConfigError naming the key."""
    for key, name, b in _blocks(config):
        if name in vocab.TWO_D_EXPERIMENTS:
            bad = [d for d in b["datasets"] if d not in vocab.TWO_D]
            if bad:
                raise ConfigError(
                    f"{key}.datasets: {name} draws decision boundaries, which need 2-D inputs; "
                    f"{', '.join(bad)} is not 2-D (allowed: {', '.join(vocab.TWO_D)})"
                )
        if "groupnorm" not in b["norms"]:
            continue
        for dataset in b["datasets"]:
            per = config["training"].get("per_dataset", {}).get(dataset, {})
            gkey = (
                f"{key}.groups"
                if "groups" in b
                else f"training.per_dataset.{dataset}.groups"
                if "groups" in per
                else "training.groups"
            )
            for groups in b.get("groups", [training(config, dataset)["groups"]]):
                for width in b["widths"]:
                    if width % groups:
                        raise ConfigError(
                            f"{key}.widths: groupnorm splits each layer's {width} units into "
                            f"{gkey} = {groups} groups, which must divide the width; allowed "
                            f"widths are multiples of {groups} (or set {gkey} to a divisor of "
                            f"{width})"
                        )
    for dataset, over in config["training"].get("per_dataset", {}).items():
        for k in over:
            if k not in TRAINING_KEYS:  # the schema checks this too; kept for direct callers
                raise ConfigError(
                    f"training.per_dataset.{dataset}.{k}: unknown key; "
                    f"allowed: {', '.join(TRAINING_KEYS)}"
                )
