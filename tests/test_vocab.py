"""One home for every name: the schema, the engine, the CLI, the registry of figures and tables
and the paper's sections agree with bnstudy.vocab, and no list of names is written twice."""

from __future__ import annotations

import ast
import inspect
import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from bnstudy import cli, data, figures, grid, models, tables, train, vocab

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
PAPER = REPO / "paper"


def test_the_schema_enums_are_the_vocabulary():
    d = SCHEMA["$defs"]
    assert d["dataset"]["enum"] == list(vocab.DATASETS)
    assert d["activation"]["enum"] == list(vocab.ACTIVATIONS)
    assert d["norm"]["enum"] == list(vocab.NORMS)
    assert d["placement"]["enum"] == list(vocab.PLACEMENTS)
    assert d["optimizer"]["enum"] == list(vocab.OPTIMIZERS)
    assert d["schedule"]["enum"] == list(vocab.SCHEDULES)
    assert SCHEMA["properties"]["experiments"]["propertyNames"]["enum"] == list(vocab.EXPERIMENTS)
    assert d["test_batch_size"]["anyOf"][1] == {"const": vocab.FULL}


def test_defaults_have_one_home():
    training = SCHEMA["properties"]["training"]["properties"]
    assert set(d["training_override"]["properties"] if (d := SCHEMA["$defs"]) else ()) == set(
        vocab.TRAINING_DEFAULTS
    )
    assert not [
        k for k, v in training.items() if "default" in v and k != "per_dataset"
    ]  # vocab's, not the schema's
    analysis = SCHEMA["properties"]["analysis"]["properties"]
    assert set(analysis) == set(vocab.ANALYSIS_DEFAULTS) and not [
        k for k, v in analysis.items() if "default" in v
    ]
    # the library and the CLI read the same defaults
    cfg = train.TrainConfig()
    for key in ("epochs", "batch_size", "optimizer", "momentum", "schedule"):
        assert getattr(cfg, key) == vocab.TRAINING_DEFAULTS[key]
    args = cli.build_parser().parse_args(
        ["train", "--data", "x", "--family", '{"norm": "none", "activations": ["relu"]}']
        + ["--out", "o"]
    )
    assert (
        args.epochs == vocab.TRAINING_DEFAULTS["epochs"]
        and args.batch_size == vocab.TRAINING_DEFAULTS["batch_size"]
    )
    assert args.test_batch_sizes == [str(b) for b in vocab.TRAINING_DEFAULTS["test_batch_sizes"]]
    assert models.ModelSpec(2, 2).groups == vocab.TRAINING_DEFAULTS["groups"]
    stats = cli.build_parser().parse_args(
        [
            *("stats", "--metrics", "m", "--reference", "r", "--summary", "s"),
            *("--gaps", "g", "--shares", "h", "--placement", "p", "--batchstats", "b"),
            *("--composition", "c"),
        ]
    )
    assert (stats.alpha, stats.gap_fraction) == (
        vocab.ANALYSIS_DEFAULTS["alpha"],
        vocab.ANALYSIS_DEFAULTS["gap_fraction"],
    )
    # grid fills what a config leaves out
    config = {
        "training": {"seeds": [0], "lrs": [0.1], "epochs": 1, "batch_size": 8},
        "experiments": {},
    }
    assert (
        grid.training(config, "xor")["test_batch_sizes"]
        == vocab.TRAINING_DEFAULTS["test_batch_sizes"]
    )
    assert grid.analysis(config) == vocab.ANALYSIS_DEFAULTS


def test_the_engine_derives_its_names_from_the_vocabulary():
    import jax.numpy as jnp

    assert data.NAMES == tuple(vocab.DATASETS)
    assert set(data.GENERATED) | {"digits"} | set(data.DOWNLOADED) == set(vocab.DATASETS)
    assert set(data.NUM_CLASSES) == set(vocab.DATASETS)
    assert tuple(models.ACTIVATIONS) == tuple(vocab.ACTIVATIONS)
    x = jnp.linspace(-2, 2, 5)
    for name, fn in models.ACTIVATIONS.items():
        y = fn(x)
        assert y.shape == x.shape and (name != "identity" or (y == x).all())
    assert train.OPTIMIZERS == tuple(vocab.OPTIMIZERS) and train.SCHEDULES == vocab.SCHEDULES
    assert tuple(grid.Cell.__dataclass_fields__) == vocab.CELL_KEYS


def test_every_output_has_its_function_inputs_and_section():
    sources = {p: p.read_text() for p in sorted((PAPER / "sections").rglob("*.tex"))}
    for name, o in vocab.OUTPUTS.items():
        module = figures if o.kind == "figure" else tables
        params = list(inspect.signature(getattr(module, name)).parameters)
        assert params[: len(o.inputs)] == list(o.inputs), name
        assert set(o.inputs) <= set(vocab.INPUTS) and set(o.experiments) <= set(vocab.EXPERIMENTS)
        command = "figurefile" if o.kind == "figure" else "tablefile"
        where = [p for p, text in sources.items() if f"\\{command}{{{name}}}" in text]
        expected = {PAPER / "sections" / "results" / f"{e.lower()}.tex" for e in o.experiments} or {
            PAPER / "sections" / "setup.tex"
        }
        assert where and set(where) <= expected, (name, where)
    for e in vocab.EXPERIMENTS:
        assert (PAPER / "sections" / "results" / f"{e.lower()}.tex").is_file()
    assert vocab.OUTPUTS["e6_boundaries"].experiments == vocab.TWO_D_EXPERIMENTS


def test_outputs_follow_the_experiments():
    assert [o.name for o in vocab.outputs_for(["E5"])] == ["e5_placement", "placement", "compute"]
    assert {o.name for o in vocab.outputs_for(["E7"])} == {"e7_dynamics", "dynamics", "compute"}
    assert {o.name for o in vocab.outputs_for(["E0"])} == {"anchors", "compute"}
    assert len(vocab.outputs_for(vocab.EXPERIMENTS)) == len(vocab.OUTPUTS)


# --- nothing written twice ----------------------------------------------------------------------

NAME_SETS = {
    "datasets": set(vocab.DATASETS),
    "activations": set(vocab.ACTIVATIONS),
    "norms": set(vocab.NORMS),
    "experiments": set(vocab.EXPERIMENTS),
    "outputs": set(vocab.OUTPUTS),
}
CODE = sorted((REPO / "src" / "bnstudy").glob("*.py"))
WORKFLOW = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]


def _name_lists(path: Path):
    """Literal lists, tuples and sets of two or more strings that are all names of one kind.
    (A dict keyed by names maps each to a property of its own, e.g. a dataset's loader.)"""
    for node in ast.walk(ast.parse(path.read_text())):
        elts = getattr(node, "elts", None)
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)) or not elts:
            continue
        strings = [
            e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        ]
        if len(strings) == len(elts) >= 2:
            for kind, names in NAME_SETS.items():
                if set(strings) <= names:
                    yield kind, node.lineno, strings


def test_no_list_of_names_outside_the_vocabulary():
    found = [
        (p.name, line, kind, names)
        for p in CODE
        if p.name != "vocab.py"
        for kind, line, names in _name_lists(p)
    ]
    assert not found, found
    names = set(vocab.DATASETS) | set(vocab.ACTIVATIONS) | set(vocab.NORMS) | set(vocab.EXPERIMENTS)
    figures_ = set(vocab.FIGURES)
    for p in WORKFLOW:  # the rules name no dataset, activation, norm, experiment or figure at all
        quoted = set(re.findall(r"[\"']([a-z0-9_]+|E\d)[\"']", p.read_text()))
        assert not quoted & (names | figures_), (p.name, quoted & (names | figures_))


def _windows(path: Path, size: int = 6):
    lines = [line.strip() for line in path.read_text().splitlines()]
    code = [(i + 1, line) for i, line in enumerate(lines) if line and not line.startswith("#")]
    for k in range(len(code) - size + 1):
        yield code[k][0], tuple(line for _, line in code[k : k + size])


def test_no_six_lines_repeated_in_code_and_rules():
    seen = defaultdict(list)
    for p in CODE + WORKFLOW:
        for line, window in _windows(p):
            if sum(len(x) for x in window) > 120:  # not a run of brackets and short keywords
                seen[window].append(f"{p.relative_to(REPO)}:{line}")
    repeated = {w: where for w, where in seen.items() if len(where) > 1}
    assert not repeated, next(iter(repeated.items()))


@pytest.mark.parametrize("kind", ["figure", "table"])
def test_the_cli_offers_exactly_the_registry(kind):
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    choices = next(a for a in sub.choices[kind]._actions if a.dest == "name").choices
    assert tuple(choices) == (vocab.FIGURES if kind == "figure" else vocab.TABLES)
