"""The study's vocabulary: every name the pipeline knows, written once.

Datasets, activations, normalizations, placements, experiments, the keys of a cell, the
figures and tables of the paper, and the defaults of every setting live here and nowhere else.
The engine (`models`, `data`, `train`), the workflow (`grid`, the rules), the JSON schema of the
config, the CLI's choices, the analysis (`stats`, `tables`, `figures`, `macros`) and the tests
read them from this module; `tests/test_vocab.py` checks the schema's enums and defaults against
it. No JAX, no pandas: the Snakefile imports it.

Adding an activation is one entry in ACTIVATIONS (its display name and the dotted path of its
JAX function); adding a figure is one entry in OUTPUTS plus its drawing function in
`bnstudy.figures` (a table: plus its function in `bnstudy.tables`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    label: str  # display name
    two_d: bool = False  # 2-D inputs: decision boundaries (E6) can be drawn


@dataclass(frozen=True)
class Activation:
    label: str
    function: str | None  # dotted path of the JAX function (None: the identity)


@dataclass(frozen=True)
class Norm:
    label: str
    batch_stats: bool = False  # normalizes with batch statistics in training mode
    affine: bool = False  # an affine map of its input at inference (folds into the Linear layers)


# In the study's canonical order: tables, figures and sorted results follow it.
DATASETS = {
    "spirals": Dataset("spirals", two_d=True),
    "xor": Dataset("XOR", two_d=True),
    "mnist1d": Dataset("MNIST-1D"),
    "digits": Dataset("digits"),
    "mnist": Dataset("MNIST"),
    "fashion_mnist": Dataset("Fashion-MNIST"),
    "cifar10": Dataset("CIFAR-10"),
}
ACTIVATIONS = {
    "identity": Activation("identity", None),
    "relu": Activation("ReLU", "jax.nn.relu"),
    "tanh": Activation("tanh", "jax.numpy.tanh"),
    "gelu": Activation("GELU", "jax.nn.gelu"),
    "silu": Activation("SiLU", "jax.nn.silu"),
    "elu": Activation("ELU", "jax.nn.elu"),
    "leaky_relu": Activation("leaky ReLU", "jax.nn.leaky_relu"),
    "sigmoid": Activation("sigmoid", "jax.nn.sigmoid"),
}
NORMS = {
    "none": Norm("none", affine=True),
    "batchnorm": Norm("BatchNorm", batch_stats=True, affine=True),
    "zscore": Norm("z-score", batch_stats=True, affine=True),  # BatchNorm without scale and shift
    "layernorm": Norm("LayerNorm"),
    "rmsnorm": Norm("RMSNorm"),
    "groupnorm": Norm("GroupNorm"),
}
PLACEMENTS = {
    "pre": "Linear -> norm -> activation",
    "post": "Linear -> activation -> norm",
}
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD with momentum"}
SCHEDULES = ("constant", "cosine")

TWO_D = tuple(k for k, d in DATASETS.items() if d.two_d)
BATCH_STAT_NORMS = tuple(k for k, n in NORMS.items() if n.batch_stats)
AFFINE_NORMS = tuple(k for k, n in NORMS.items() if n.affine)
PER_EXAMPLE_NORMS = ("layernorm", "rmsnorm")  # normalize each example by itself (E1, E2 prose)

# The networks the verdict is about, as (activation, norm).
LINEAR = ("identity", "none")  # the linear baseline: no nonlinearity anywhere
BN_ONLY = ("identity", "batchnorm")
ZSCORE_ONLY = ("identity", "zscore")
RELU_BN = ("relu", "batchnorm")

EXPERIMENTS = {
    "E0": "Calibration against published results",
    "E1": "BatchNorm without an activation against the linear baseline",
    "E2": "Collapse into one affine map, computed",
    "E3": "Where the training-mode nonlinearity lives",
    "E4": "Depth and signal propagation",
    "E5": "Normalization before or after the activation",
    "E6": "Decision boundaries",
    "E7": "Nonlinear in W, linear in x",
    "E8": "The strong form: BatchNorm with batch statistics at small batches",
    "E9": "Normalization that is a nonlinearity",
}
TWO_D_EXPERIMENTS = ("E6",)  # experiments whose datasets must be 2-D
BATCH_SIZE_EXPERIMENT = "E8"  # its batch-statistics cells are also probed at their own batch size
# the experiments that read the batch-statistics probes (batchstats.parquet, cond_* metrics): a
# family runs them on the activations whose cells belong to one of these, and on no others
BATCH_PROBE_EXPERIMENTS = ("E3", "E8")
DEPTH_EXPERIMENT = "E4"  # its cells' gradient norms at init are measured at `init_batch_sizes`
BOUNDARY_EXPERIMENT = "E6"  # draws its cells' decision boundaries (inference mode) and the
CONDITIONAL_BATCH = 4  # fixed-mates boundaries of E8's networks trained at this batch size
CLAIM_EXPERIMENTS = ("E1", "E8", "E9")  # the experiments whose cells bnstudy.stats.claims judges
ANSWER_EXPERIMENT = "E1"  # the settings whose verdicts the study's answer conjoins

# A cell: one architecture on one dataset at one training batch size (groups: GroupNorm's group
# count, the default for other norms), trained once for every seed x learning rate.
CELL_KEYS = ("dataset", "activation", "norm", "placement", "depth", "width", "batch_size", "groups")
RUN_KEYS = (*CELL_KEYS, "seed", "lr")  # one trained network
SETTING_KEYS = ("dataset", "placement", "depth", "width", "batch_size")  # what compared cells share

FULL = "full"  # test batch size: the whole test set as one batch
COMPOSITIONS = ("random", "class")  # test batches: drawn at random, or one class per batch

# Defaults of the `training:` settings (the schema has none of its own; the library, the CLI
# and bnstudy.grid read these).
TRAINING_DEFAULTS = {
    "seeds": [0],
    "lrs": [0.001],
    "epochs": 20,
    "batch_size": 64,
    "optimizer": "adam",
    "momentum": 0.9,
    "schedule": "constant",
    "groups": 8,
    "test_batch_sizes": [2, 8, 32, 256, FULL],
    "extend_edges": 2,  # rounds of learning rates beyond an edge a cell selected
    "init_batch_sizes": [4, 16, 64, 256],  # E4: gradient norms at initialization at these sizes
}
# Defaults of the `analysis:` settings.
ANALYSIS_DEFAULTS = {
    "alpha": 0.05,  # level of the gap tests (Holm over datasets); intervals are 1 - alpha
    "gap_fraction": 0.2,  # "no better than linear": recovers less than this share of the gap
    "min_gap": 0.05,  # a dataset discriminates when its gap is significantly above this
}
CONFIDENCE_LEVEL = 0.95

# Published figures the default study reproduces, for the paper's calibration table: what is
# measured -> (published value, its source's bibliography key); None: a theoretical value that
# bnstudy.theory computes. `bnstudy.tables.anchors` measures each on this run.
ANCHOR_MLP = ("relu", "none")  # MNIST-1D's published MLP (E0): ReLU, two hidden layers, no norm
ANCHORS = {
    "mnist1d_logistic": (0.32, "greydanus2020scaling"),  # logistic regression, test accuracy
    "mnist1d_mlp": (0.68, "greydanus2020scaling"),  # ReLU MLP, test accuracy
    "grad_growth_relu_bn": (None, "yang2019mean"),  # theory.bn_growth("relu") = sqrt(pi/(pi-1))
    "grad_growth_relu": (None, "he2015delving"),  # theory.plain_growth("relu") = sqrt(1/2)
}


# --------------------------------------------------------------------------------- outputs

# The study's tables that the figures and tables read; `bnstudy.grid.STUDY_FILES` has their paths.
INPUTS = (
    "metrics",
    "history",
    "batchstats",
    "layers",
    "boundaries",
    "reference",
    "summary",
    "gaps",
    "shares",
    "placement",
    "composition",
    "benchmarks",
)


@dataclass(frozen=True)
class Output:
    """One figure (vector PDF) or table (LaTeX tabular) of the paper."""

    name: str
    kind: str  # "figure" or "table"
    experiments: tuple[str, ...]  # drawn when the config holds any of them; () = always
    inputs: tuple[str, ...]  # which of INPUTS it reads
    caption: str  # for the HTML report (the paper's captions live in paper/sections/)

    @property
    def path(self) -> str:
        return f"results/{self.kind}s/{self.name}.{'pdf' if self.kind == 'figure' else 'tex'}"


OUTPUTS = {
    o.name: o
    for o in (
        Output(
            "e1_heatmaps",
            "figure",
            ("E1",),
            ("shares",),
            "E1: test accuracy of every activation x normalization cell per dataset, coloured by the "
            "share of the nonlinearity gap it recovers (0: the linear reference; 1: ReLU + "
            "BatchNorm).",
        ),
        Output(
            "e2_collapse",
            "figure",
            ("E2",),
            ("metrics",),
            "E2: affinity gap of every trained network, and the deviation between each foldable "
            "network (identity activation with no norm, z-score or BatchNorm) and its folded affine map.",
        ),
        Output(
            "e3_batch_dependence",
            "figure",
            ("E3",),
            ("metrics", "batchstats"),
            "E3: accuracy in batch-statistics mode against the test batch size for random and "
            "one-class batches, and the flip rate when only the batch-mates change.",
        ),
        Output(
            "e4_depth",
            "figure",
            ("E4",),
            ("metrics", "layers"),
            "E4: gradient norms at initialization against depth and per layer, and test accuracy "
            "against depth.",
        ),
        Output(
            "e5_placement",
            "figure",
            ("E5",),
            ("metrics",),
            "E5: test accuracy with the normalization after the activation against before it.",
        ),
        Output(
            "e6_boundaries",
            "figure",
            ("E6",),
            ("metrics", "boundaries"),
            "E6: decision regions on the 2-D sets in inference mode, and in batch-statistics mode "
            "for the batch-normalized networks.",
        ),
        Output(
            "e7_dynamics",
            "figure",
            ("E7",),
            ("metrics", "history"),
            "E7: training loss and validation accuracy per epoch of identity networks with no "
            "normalization, z-score and BatchNorm.",
        ),
        Output(
            "e8_batch_size",
            "figure",
            ("E8",),
            ("metrics", "batchstats", "reference", "gaps"),
            "E8: test accuracy against the training batch size of networks trained and used with "
            "batch statistics: inference mode, batch-statistics mode at their own batch size, and "
            "the conditional function with fixed batch-mates; its affinity gap.",
        ),
        Output(
            "e8_saturation",
            "figure",
            ("E8",),
            (),
            "E8: the z-score of one unit as a function of the example's own pre-activation, with "
            "its batch-mates fixed: the study's BatchNorm layer against Proposition 3's closed form "
            "and its bound sqrt(m - 1).",
        ),
        Output(
            "e9_groups",
            "figure",
            ("E9",),
            ("shares",),
            "E9: share of the nonlinearity gap that identity + GroupNorm recovers against its "
            "number of groups, beside identity + LayerNorm and RMSNorm.",
        ),
        Output(
            "main",
            "table",
            ("E1",),
            ("summary", "reference"),
            "E1: test accuracy of the linear reference and the key networks per dataset, mean and "
            "95% t interval over seeds (each seed its own data split).",
        ),
        Output(
            "claims",
            "table",
            ("E1",),
            ("gaps", "shares"),
            "E1: the nonlinearity gap per dataset and the share of it each identity network "
            "recovers, with Fieller intervals and verdicts.",
        ),
        Output(
            "anchors",
            "table",
            ("E0", "E1", "E4"),
            ("summary", "reference", "layers", "metrics"),
            "Checks against published results: each reproduced figure beside its published value.",
        ),
        Output(
            "e3",
            "table",
            ("E3",),
            ("composition",),
            "E3: per dataset and network, accuracy with one-class test batches minus that with "
            "random test batches at each test batch size, paired over seeds (Holm).",
        ),
        Output(
            "e4",
            "table",
            ("E4",),
            ("layers",),
            "E4: the input layer's gradient growth per added layer at initialization, per network "
            "and batch size, beside the mean-field prediction.",
        ),
        Output(
            "e8",
            "table",
            ("E8",),
            ("metrics", "batchstats", "reference", "gaps"),
            "E8: per dataset and training batch size, the accuracy of BatchNorm-only networks in "
            "each mode and the share of the nonlinearity gap their batch-statistics mode recovers.",
        ),
        Output(
            "e9",
            "table",
            ("E9",),
            ("gaps", "shares"),
            "E9: per dataset, the share of the nonlinearity gap each per-example normalization "
            "recovers without an activation, with Fieller intervals and verdicts.",
        ),
        Output(
            "fold",
            "table",
            ("E2",),
            ("metrics",),
            "E2: fold deviation, agreement of the folded map and affinity gap per network kind.",
        ),
        Output(
            "placement",
            "table",
            ("E5",),
            ("placement",),
            "E5: test accuracy before and after the activation and the paired difference test.",
        ),
        Output(
            "dynamics",
            "table",
            ("E7",),
            ("metrics", "history"),
            "E7: test accuracy and training loss after the first and the last epoch.",
        ),
        Output(
            "compute",
            "table",
            (),
            ("metrics", "benchmarks"),
            "Compute used per experiment: runs, cells, devices and training wall time.",
        ),
    )
}
FIGURES = tuple(k for k, o in OUTPUTS.items() if o.kind == "figure")
TABLES = tuple(k for k, o in OUTPUTS.items() if o.kind == "table")


def outputs_for(experiments) -> list[Output]:
    """The figures and tables of a config holding `experiments` (names like "E1")."""
    held = set(experiments)
    return [o for o in OUTPUTS.values() if not o.experiments or held & set(o.experiments)]


def label(key: str) -> str:
    """Display name of a dataset, activation, norm or optimizer key; unknown keys as themselves."""
    for kind in (DATASETS, ACTIVATIONS, NORMS):
        if key in kind:
            return kind[key].label
    return OPTIMIZERS.get(key, str(key).replace("_", " "))
