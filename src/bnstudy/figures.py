"""The paper's figures, one function per experiment, each writing one vector PDF.

One style for all (seaborn "paper" context, 8 pt text, the colour-blind-safe "colorblind"
palette, one fixed colour per network composition), drawn at the width they are printed
(the paper includes them at natural size, so 8 pt here is 8 pt on the page). Error bars and
bands are 95% Student-t intervals over seeds, the same intervals as the tables.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from bnstudy import grid, stats, theory, vocab  # noqa: E402
from bnstudy.names import canonical, composition, label, network, ordered  # noqa: E402
from bnstudy.results import atomic_output  # noqa: E402
from bnstudy.tables import DYNAMICS_CELLS, DYNAMICS_NORMS  # noqa: E402

TEXTWIDTH = 6.3  # inches: the paper's text width (a4, 2.5 cm margins)
PALETTE = sns.color_palette("colorblind")
# Fixed colours for the compositions the study is about; any other gets the next free colour.
KEY_COLOURS = {
    "identity": "black",
    "identity + BatchNorm": PALETTE[0],
    "identity + z-score": PALETTE[1],
    "ReLU + BatchNorm": PALETTE[2],
    "ReLU": PALETTE[3],
}
OTHER_COLOURS = [PALETTE[i] for i in (4, 5, 9, 7, 6, 8)]  # the strongest first


def set_style() -> None:
    sns.set_theme(
        context="paper",
        style="whitegrid",
        palette="colorblind",
        rc={
            "font.size": 8,
            "axes.titlesize": 8,
            "axes.labelsize": 8,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "legend.fontsize": 7,
            "legend.title_fontsize": 7.5,
            "pdf.fonttype": 42,
            "axes.linewidth": 0.6,
            "grid.linewidth": 0.4,
            "lines.linewidth": 1.2,
            "lines.markersize": 3.5,
            "figure.dpi": 150,
            "savefig.bbox": "tight",
            "savefig.pad_inches": 0.02,
        },
    )


def colours(labels) -> dict:
    """A colour per composition label: the fixed ones, then the palette's unused colours."""
    others = [lab for lab in labels if lab not in KEY_COLOURS]
    out = {lab: OTHER_COLOURS[i % len(OTHER_COLOURS)] for i, lab in enumerate(others)}
    return {lab: KEY_COLOURS.get(lab, out.get(lab)) for lab in labels}


def ci95(x):
    """seaborn `errorbar` callable: the 95% t-interval of the mean."""
    _, lo, hi = stats.t_interval(x)
    m = float(np.mean(x))
    return (m, m) if not np.isfinite(lo) else (lo, hi)


def _with_labels(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["network"] = [composition(a, n) for a, n in zip(out["activation"], out["norm"])]
    out["Dataset"] = [label(d) for d in out["dataset"]]
    return out


def _network_order(df: pd.DataFrame) -> list[str]:
    keys = canonical(df[["activation", "norm"]].drop_duplicates(), ["activation", "norm"])
    return [composition(r.activation, r.norm) for r in keys.itertuples()]


def _save(fig, path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="pdf")
    plt.close(fig)


def _empty(path, message: str) -> None:
    """A small figure saying what is missing, instead of a crash or an empty panel."""
    fig, ax = plt.subplots(figsize=(TEXTWIDTH, 0.6))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    _save(fig, path)


def _grid(n: int, ncols: int, panel_w: float, panel_h: float, **kw):
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_w * ncols, panel_h * nrows), squeeze=False, **kw
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def e1_heatmaps(shares: pd.DataFrame, path) -> None:
    """Test accuracy (%, annotated) of every activation x normalization cell, coloured by the share
    of the nonlinearity gap it recovers (0: the linear reference, 1: ReLU + BatchNorm, outlined);
    one panel per setting, titled with the linear reference's accuracy and the gap."""
    shares = stats.of_experiment(shares, "E1")
    if shares.empty:
        return _empty(path, "no E1 runs")
    settings = canonical(shares[list(vocab.SETTING_KEYS)].drop_duplicates(), vocab.SETTING_KEYS)
    acts = ordered(shares["activation"], vocab.ACTIVATIONS)
    norms = ordered(shares["norm"], vocab.NORMS)
    fig, axes = _grid(
        len(settings), 2, TEXTWIDTH / 2, 0.75 + 0.24 * len(acts), layout="constrained"
    )
    fig.set_figheight(fig.get_figheight() + 0.6)  # room for the colour bar
    cmap = sns.color_palette("crest", as_cmap=True)
    for ax, s in zip(axes, settings.itertuples()):
        g = shares[
            (shares["dataset"] == s.dataset)
            & (shares["placement"] == s.placement)
            & (shares["depth"] == s.depth)
            & (shares["width"] == s.width)
        ]
        share, acc = (
            g.pivot(index="activation", columns="norm", values=col).reindex(
                index=acts, columns=norms
            )
            for col in ("share", "mean_acc")
        )
        sns.heatmap(
            share.clip(-0.1, 1.1),
            ax=ax,
            cmap=cmap,
            vmin=0,
            vmax=1,
            annot=100 * acc,
            fmt=".1f",
            annot_kws={"fontsize": 6.5},
            cbar=False,
            linewidths=0.4,
            linecolor="white",
        )
        ax.set_xticklabels([label(n) for n in norms], rotation=30, ha="right")
        ax.set_yticklabels([label(a) for a in acts], rotation=0)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(length=0)
        if vocab.RELU_BN[0] in acts and vocab.RELU_BN[1] in norms:
            ax.add_patch(
                Rectangle(
                    (norms.index(vocab.RELU_BN[1]), acts.index(vocab.RELU_BN[0])),
                    1,
                    1,
                    fill=False,
                    edgecolor="black",
                    linewidth=1.6,
                    clip_on=False,
                )
            )
        title = label(s.dataset)
        if (settings["dataset"] == s.dataset).sum() > 1:
            title += f" ({s.placement}, d{s.depth}, w{s.width})"
        reference = g["mean_reference"].dropna()
        gap = (g["mean_nonlinear"] - g["mean_reference"]).dropna()
        if len(reference) and len(gap):
            title += f"\nlinear reference {100 * reference.iloc[0]:.1f}%, gap {100 * gap.iloc[0]:.1f} points"
        ax.set_title(title)
    fig.colorbar(
        plt.cm.ScalarMappable(plt.Normalize(0, 1), cmap=cmap),
        ax=list(axes),
        location="bottom",
        shrink=0.5,
        aspect=40,
        pad=0.02,
        label="colour: share of the gap recovered (0 = linear reference, 1 = ReLU + BatchNorm, "
        "outlined); numbers: test accuracy (%)",
    )
    _save(fig, path)


def e2_collapse(metrics: pd.DataFrame, path) -> None:
    """Left: the affinity gap of every trained network (log scale) by composition. Right: the
    largest deviation between each foldable network and its folded affine map."""
    runs = _with_labels(metrics[metrics["experiment"] == "E2"])
    if runs.empty:
        return _empty(path, "no E2 runs")
    order = _network_order(runs)
    hue_order = [label(d) for d in ordered(runs["dataset"], vocab.DATASETS)]
    floor = 1e-12  # exact zeros are drawn at the floor of the log axis
    runs["affine_gap_plot"] = runs["affine_gap"].clip(lower=floor)
    runs["fold_plot"] = runs["fold_max_dev"].clip(lower=floor)
    fold = runs[runs["fold_max_dev"].notna()]
    widths = [max(len(order), 1), max(fold["network"].nunique(), 1)]
    fig, (a, b) = plt.subplots(
        1, 2, figsize=(TEXTWIDTH, 2.6), width_ratios=widths, layout="constrained"
    )
    sns.stripplot(
        runs,
        x="network",
        y="affine_gap_plot",
        hue="Dataset",
        order=order,
        hue_order=hue_order,
        dodge=True,
        size=3,
        jitter=0.15,
        log_scale=True,
        ax=a,
    )
    a.set(xlabel="", ylabel="affinity gap (relative)", title="(a) distance from an affine map")
    if len(fold):
        sns.stripplot(
            fold,
            x="network",
            y="fold_plot",
            hue="Dataset",
            order=[o for o in order if o in set(fold["network"])],
            hue_order=hue_order,
            dodge=True,
            size=3,
            jitter=0.15,
            log_scale=True,
            ax=b,
            legend=False,
        )
    b.set(xlabel="", ylabel="max |network - folded map|", title="(b) fold into one affine map")
    for ax in (a, b):
        ax.tick_params(axis="x", rotation=35)
        for t in ax.get_xticklabels():
            t.set_ha("right")
            t.set_rotation_mode("anchor")
    sns.move_legend(a, "upper left", title="", frameon=True)
    _save(fig, path)


def e3_batch_dependence(metrics: pd.DataFrame, batchstats: pd.DataFrame, path) -> None:
    """Accuracy in batch-statistics mode versus test batch size, with random batches (top) and
    one-class batches (middle), and the flip rate when only the batch-mates change (bottom);
    one column per dataset. Dotted: each network's accuracy with running statistics."""
    bs = _with_labels(stats.selected(batchstats, "E3"))
    if bs.empty:
        return _empty(path, "no E3 runs with batch-statistics evaluations")
    runs = _with_labels(stats.selected(metrics, "E3"))
    runs = runs[runs["norm"].isin(vocab.BATCH_STAT_NORMS)]
    sizes = (
        bs[["full", "test_batch_size"]].drop_duplicates().sort_values(["full", "test_batch_size"])
    )
    ticks = [vocab.FULL if f else str(b) for f, b in zip(sizes["full"], sizes["test_batch_size"])]
    bs["batch"] = [vocab.FULL if f else str(b) for f, b in zip(bs["full"], bs["test_batch_size"])]
    panels = [
        ("accuracy,\nrandom batches", bs[bs["composition"] == "random"], "accuracy"),
        ("accuracy,\none-class batches", bs[bs["composition"] == "class"], "accuracy"),
        ("flip rate", bs[(bs["composition"] == "random") & ~bs["full"]], "flip_rate"),
    ]
    datasets = [label(d) for d in ordered(bs["dataset"], vocab.DATASETS)]
    order = _network_order(bs)
    pal = colours(order)
    fig, axes = plt.subplots(
        3,
        len(datasets),
        figsize=(min(TEXTWIDTH, 0.6 + 2.85 * len(datasets)), 4.4),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    for j, d in enumerate(datasets):
        for i, (row_label, long, value) in enumerate(panels):
            ax = axes[i, j]
            sns.lineplot(
                long[long["Dataset"] == d],
                x="batch",
                y=value,
                hue="network",
                hue_order=order,
                palette=pal,
                marker="o",
                errorbar=ci95,
                ax=ax,
                legend=False,
                sort=False,
            )
            if i < 2:  # accuracy rows: the same network with running statistics, for reference
                for net, g in runs[runs["Dataset"] == d].groupby("network"):
                    ax.axhline(g["test_acc"].mean(), color=pal[net], linestyle=":", linewidth=0.9)
            ax.set(
                title=d if i == 0 else "",
                xlabel="test batch size" if i == 2 else "",
                ylabel=row_label if j == 0 else "",
            )
            if i == 2:
                ax.set_ylim(bottom=0)
    for ax in axes.flat:  # one categorical order on every panel
        ax.set_xticks(range(len(ticks)), ticks)
    handles = [plt.Line2D([], [], color=pal[n], marker="o", label=n) for n in order]
    handles.append(plt.Line2D([], [], color="grey", linestyle=":", label="running statistics"))
    fig.legend(
        handles=handles, loc="outside lower center", ncol=min(len(handles), 3), frameon=False
    )
    _save(fig, path)


def geomean(x) -> float:
    """seaborn `estimator` for log-scale axes: the geometric mean."""
    return float(np.exp(np.mean(np.log(x))))


def geo_ci95(x):
    """seaborn `errorbar` for log-scale axes: the 95% t-interval of the mean log, exponentiated."""
    return tuple(np.exp(ci95(np.log(np.asarray(x, float)))))


def e4_depth(metrics: pd.DataFrame, layers: pd.DataFrame, path) -> None:
    """(a) gradient norm of the input layer at initialization versus depth; (b) gradient norm
    per layer at initialization for the deepest networks (geometric means, intervals of the log);
    (c) final test accuracy versus depth; (d) the input layer's growth per added layer against
    the batch size of the gradient, beside the mean-field predictions (bnstudy.theory)."""
    runs = _with_labels(stats.selected(metrics, "E4"))
    grads = _with_labels(stats.at_training_batch(stats.selected(layers, "E4")))
    if runs.empty:
        return _empty(path, "no E4 runs")
    runs = runs.merge(
        grads[grads["layer"] == 0][["experiment", *vocab.RUN_KEYS, "grad_norm_init"]].rename(
            columns={"grad_norm_init": "grad_input"}
        ),
        on=["experiment", *vocab.RUN_KEYS],
        how="left",
    )
    order = _network_order(runs)
    pal = colours(order)
    styles = {"style": "Dataset"} if runs["dataset"].nunique() > 1 else {}
    deepest = grads[grads["depth"] == grads["depth"].max()]
    lines = {"hue": "network", "hue_order": order, "palette": pal, "marker": "o", **styles}
    log_kw = {"estimator": geomean, "errorbar": geo_ci95}
    fig, ((a, b), (c, d)) = plt.subplots(2, 2, figsize=(TEXTWIDTH, 4.6), layout="constrained")
    sns.lineplot(runs, x="depth", y="grad_input", ax=a, legend=False, **lines, **log_kw)
    a.set(
        yscale="log",
        xlabel="depth (hidden layers)",
        ylabel="gradient norm, input layer",
        title="(a) at initialization",
    )
    sns.lineplot(
        deepest,
        x="layer",
        y="grad_norm_init",
        markersize=2.5,
        ax=b,
        legend=False,
        **lines,
        **log_kw,
    )
    b.set(
        yscale="log",
        xlabel="layer (0 = input)",
        ylabel="gradient norm",
        title=f"(b) per layer, depth {int(runs['depth'].max())}",
    )
    sns.lineplot(runs, x="depth", y="test_acc", errorbar=ci95, ax=c, **lines)
    c.set(xlabel="depth (hidden layers)", ylabel="test accuracy", title="(c) after training")
    for ax in (a, c):
        ax.set_xscale("log", base=2)
        depths = sorted(runs["depth"].unique())
        ax.set_xticks(depths, [str(int(d)) for d in depths])
        ax.minorticks_off()
    _growth_by_batch(layers, d, pal)
    handles, labels = c.get_legend_handles_labels()
    c.get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)
    _save(fig, path)


def _growth_by_batch(layers: pd.DataFrame, ax, pal: dict) -> None:
    """E4 (d): measured growth per layer (points, intervals over seeds) against the batch size of
    the gradient; lines: the predictions (dashed where only the large-batch limit is known)."""
    fits = stats.depth_growth_by_batch(layers, "E4")
    for (act, norm), f in fits.groupby(["activation", "norm"], sort=False):
        colour = pal.get(network(act, norm), "0.3")
        b = f["grad_batch_size"].to_numpy(float)
        err = [f["factor"] - f["factor_lo"], f["factor_hi"] - f["factor"]]
        ax.errorbar(b, f["factor"], yerr=err, fmt="o", color=colour, markersize=3, capsize=2)
        if act == "identity" and norm in vocab.BATCH_STAT_NORMS:
            grid_b = np.geomspace(max(b.min(), 4), b.max(), 100)
            rank = int(f["rank"].min())  # Proposition 6's cap: min(input rank, width)
            curve = [theory.linear_bn_growth(x, rank) for x in grid_b]  # B as a real number
            ax.plot(grid_b, curve, color=colour, lw=1)
        elif f["predicted"].notna().any():
            exact = bool(f["exact"].all())
            ax.axhline(f["predicted"].iloc[0], color=colour, lw=1, ls="-" if exact else "--")
    ax.set_xscale("log", base=2)
    sizes = sorted(fits["grad_batch_size"].unique()) if len(fits) else []
    ax.set_xticks(sizes, [str(int(x)) for x in sizes])
    ax.minorticks_off()
    ax.set(
        xlabel="batch size of the gradient",
        ylabel="growth per added layer",
        title="(d) growth against theory",
    )


def e5_placement(metrics: pd.DataFrame, path) -> None:
    """Test accuracy with the norm after the activation against before it, one point per
    composition (colour: norm, marker: activation) with 95% intervals both ways, one panel per
    dataset; on the diagonal the placement does not matter."""
    summary = stats.summarize(metrics[metrics["experiment"] == "E5"])
    wide = summary.pivot_table(
        index=["dataset", "activation", "norm", "depth", "width"],
        columns="placement",
        values=["mean", "ci_lo", "ci_hi"],
    )
    if wide.empty or "pre" not in wide["mean"] or "post" not in wide["mean"]:
        return _empty(path, "no E5 cells with both placements")
    wide = wide.dropna(subset=[("mean", "pre"), ("mean", "post")])
    wide.columns = [f"{v}_{p}" for v, p in wide.columns]
    wide = wide.reset_index()
    datasets = ordered(wide["dataset"], vocab.DATASETS)
    norms = ordered(wide["norm"], vocab.NORMS)
    acts = ordered(wide["activation"], vocab.ACTIVATIONS)
    npal = dict(zip(norms, PALETTE))
    markers = dict(zip(acts, "osD^vP*X"))
    fig, axes = plt.subplots(
        1,
        len(datasets),
        figsize=(min(TEXTWIDTH, 1.1 + 2.6 * len(datasets)), 2.9),
        squeeze=False,
        layout="constrained",
    )
    for ax, d in zip(axes[0], datasets):
        for r in wide[wide["dataset"] == d].itertuples():
            x, y = 100 * r.mean_pre, 100 * r.mean_post
            xerr = (
                [[x - 100 * r.ci_lo_pre], [100 * r.ci_hi_pre - x]]
                if np.isfinite(r.ci_lo_pre)
                else None
            )
            yerr = (
                [[y - 100 * r.ci_lo_post], [100 * r.ci_hi_post - y]]
                if np.isfinite(r.ci_lo_post)
                else None
            )
            ax.errorbar(
                x,
                y,
                xerr=xerr,
                yerr=yerr,
                fmt=markers[r.activation],
                color=npal[r.norm],
                markersize=4,
                elinewidth=0.6,
                alpha=0.85,
            )
        lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
        hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.7, linestyle="--", zorder=0)
        ax.set(
            xlim=(lo, hi),
            ylim=(lo, hi),
            aspect="equal",
            title=label(d),
            xlabel="norm before activation (pre), test acc. %",
        )
    axes[0, 0].set_ylabel("norm after activation (post), test acc. %")
    handles = [
        plt.Line2D([], [], color=npal[n], marker="o", linestyle="", label=label(n)) for n in norms
    ]
    handles += [
        plt.Line2D([], [], color="grey", marker=markers[a], linestyle="", label=label(a))
        for a in acts
    ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    _save(fig, path)


def _pick_model(npz, cell) -> int | None:
    """The index of a run's model (its norm, groups, activation, seed, lr) in its training job's
    boundary file."""
    hits = np.flatnonzero(
        (np.asarray(npz["norms"]) == cell.norm)
        & (np.asarray(npz["groups"]) == int(cell.groups))
        & (np.asarray(npz["activations"]) == cell.activation)
        & (np.asarray(npz["seeds"]) == int(cell.seed))
        & np.isclose(np.asarray(npz["lrs"]), float(cell.lr), rtol=1e-5)
    )
    return int(hits[0]) if len(hits) else None


def _mark_missing(ax) -> None:
    """A panel whose boundary grid is not there says so."""
    ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=6, transform=ax.transAxes)


def _classes(pred) -> np.ndarray:
    pred = np.asarray(pred)
    return pred.argmax(-1) if pred.ndim == 3 else pred  # logits/probabilities -> labels


def e6_boundaries(metrics: pd.DataFrame, boundaries: list, path, max_points: int = 400) -> None:
    """Decision boundaries on the 2-D sets: small multiples over normalization (rows) x activation
    (columns) in inference mode, plus rows in batch-statistics mode for the batch-normalized
    networks: the conditional function of each grid point with fixed training batch-mates, for
    the E8 network trained at batch size vocab.CONDITIONAL_BATCH (blank where E8 has none). `boundaries`: the cells' .npz files (grid.BOUNDARY).
    Each panel shows the selected learning rate's lowest seed; the number is its test accuracy."""
    runs = stats.selected(metrics, vocab.BOUNDARY_EXPERIMENT)
    small = stats.selected(metrics, vocab.BATCH_SIZE_EXPERIMENT)
    small = small[small["batch_size"] == vocab.CONDITIONAL_BATCH]  # E8's small-batch cells
    given = {Path(f).parts[-2:]: f for f in boundaries}
    datasets = ordered(runs["dataset"], vocab.DATASETS)
    if runs.empty:
        return _empty(path, "no E6 runs")
    subfig_specs = []
    for d in datasets:
        r = runs[runs["dataset"] == d]
        acts = ordered(r["activation"], vocab.ACTIVATIONS)
        norms = ordered(r["norm"], vocab.NORMS)
        rows = [(n, "inference") for n in norms]
        rows += [(n, "batch") for n in norms if n in vocab.BATCH_STAT_NORMS]
        subfig_specs.append((d, r, acts, rows))
    # Datasets side by side when their columns fit the text width, else stacked; panels shrink
    # so that the figure stays within one page.
    label_w = 0.85
    total_cols = sum(len(s[2]) for s in subfig_specs)
    side = total_cols <= 8
    if side:
        panel = min(
            0.85,
            (TEXTWIDTH - label_w * len(subfig_specs)) / total_cols,
            7.5 / max(len(s[3]) for s in subfig_specs),
        )
        widths = [label_w + panel * len(s[2]) for s in subfig_specs]
        fig = plt.figure(
            figsize=(sum(widths), 0.35 + panel * max(len(s[3]) for s in subfig_specs)),
            layout="constrained",
        )
        subfigs = fig.subfigures(1, len(subfig_specs), width_ratios=widths, squeeze=False)[0]
    else:
        ncols = max(len(s[2]) for s in subfig_specs)
        panel = min(0.85, (TEXTWIDTH - label_w) / ncols, 7.5 / sum(len(s[3]) for s in subfig_specs))
        heights = [0.35 + panel * len(s[3]) for s in subfig_specs]
        fig = plt.figure(figsize=(label_w + panel * ncols, sum(heights)), layout="constrained")
        subfigs = fig.subfigures(len(subfig_specs), 1, height_ratios=heights, squeeze=False)[:, 0]
    cmap = matplotlib.colors.ListedColormap(["#cfe1f2", "#fbd8b8", "#d5ecd0", "#e8d5ee"])
    point_colours = np.array([PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[4]])
    for sf, (d, r, acts, rows) in zip(subfigs, subfig_specs):
        sf.suptitle(label(d), fontsize=8)
        ncols = len(acts)
        axes = sf.subplots(
            len(rows), ncols, squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.04}
        )
        for i, (norm, mode) in enumerate(rows):
            for j in range(ncols):
                ax = axes[i, j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    row_label = label(norm) + (
                        f"\n(fixed mates,\n$m = {vocab.CONDITIONAL_BATCH}$)"
                        if mode == "batch"
                        else ""
                    )
                    ax.set_ylabel(row_label, fontsize=7, rotation=0, ha="right", va="center")
                if i == 0:
                    ax.set_title(label(acts[j]), fontsize=7)
                cell = r[(r["activation"] == acts[j]) & (r["norm"] == norm)]
                if mode == "batch":  # the network trained at the small batch it is used with
                    cell = small[
                        (small["dataset"] == d)
                        & (small["activation"] == acts[j])
                        & (small["norm"] == norm)
                    ]
                if cell.empty:
                    ax.set_facecolor("0.95")
                    continue
                c = cell.sort_values("seed").iloc[0]
                cell_file = grid.Cell(*(getattr(c, k) for k in vocab.CELL_KEYS)).path(grid.BOUNDARY)
                f = given.get(Path(cell_file).parts[-2:])  # {dataset}/{job}.boundary.npz
                key = "pred_inference" if mode == "inference" else "pred_batch"
                if f is None or not Path(f).exists():
                    _mark_missing(ax)
                    continue
                with np.load(f) as z:
                    k = _pick_model(z, c)
                    if k is None or key not in z or (z[key][k] < 0).all():  # -1: not computed
                        _mark_missing(ax)
                        continue
                    xx, yy, pred = z["xx"], z["yy"], _classes(z[key][k])
                    xt, yt = z["x_train"], z["y_train"]
                ncls = int(max(pred.max(), yt.max())) + 1
                ax.pcolormesh(
                    xx,
                    yy,
                    pred,
                    cmap=cmap,
                    vmin=-0.5,
                    vmax=cmap.N - 0.5,
                    shading="auto",
                    rasterized=True,
                )
                ax.contour(
                    xx, yy, pred, levels=np.arange(ncls - 1) + 0.5, colors="0.25", linewidths=0.5
                )
                step = max(1, len(xt) // max_points)
                ax.scatter(
                    xt[::step, 0],
                    xt[::step, 1],
                    c=point_colours[yt[::step] % 4],
                    s=1.2,
                    linewidths=0,
                    rasterized=True,
                )
                ax.set_xlim(xx.min(), xx.max())
                ax.set_ylim(yy.min(), yy.max())
                if mode == "inference":
                    ax.text(
                        0.03,
                        0.03,
                        f"{100 * c.test_acc:.0f}",
                        transform=ax.transAxes,
                        fontsize=6,
                        bbox={
                            "boxstyle": "round,pad=0.15",
                            "fc": "white",
                            "ec": "none",
                            "alpha": 0.8,
                        },
                    )
    _save(fig, path)


def e7_dynamics(metrics: pd.DataFrame, history: pd.DataFrame, path) -> None:
    """Identity-activation networks with no norm (the deep linear network), z-score and BatchNorm,
    at the learning rate they share (stats.at_shared_lr): training loss (top) and validation
    accuracy (bottom) per epoch, one column per dataset."""
    h = stats.at_shared_lr(history, metrics, "E7", DYNAMICS_CELLS)
    if h.empty:
        return _empty(path, "no E7 history")
    h = _with_labels(h)
    h["network"] = [network(a, n) for a, n in zip(h["activation"], h["norm"])]
    order = [
        network("identity", n)
        for n in DYNAMICS_NORMS
        if network("identity", n) in set(h["network"])
    ]
    pal = colours(order) | {network(*vocab.LINEAR): KEY_COLOURS["identity"]}
    datasets = [label(d) for d in ordered(h["dataset"], vocab.DATASETS)]
    fig, axes = plt.subplots(
        2,
        len(datasets),
        figsize=(min(TEXTWIDTH, 0.5 + 2.9 * len(datasets)), 3.4),
        squeeze=False,
        sharex="col",
        layout="constrained",
    )
    for j, d in enumerate(datasets):
        g = h[h["Dataset"] == d]
        lines = {
            "x": "epoch",
            "hue": "network",
            "hue_order": order,
            "palette": pal,
            "errorbar": ci95,
        }
        sns.lineplot(g, y="train_loss", ax=axes[0, j], legend=(j == 0), **lines)
        axes[0, j].set(title=d, xlabel="", ylabel="training loss" if j == 0 else "")
        sns.lineplot(g, y="val_acc", ax=axes[1, j], legend=False, **lines)
        axes[1, j].set(ylabel="validation accuracy" if j == 0 else "")
        last = int(g["epoch"].max())
        epochs = [e for e in (1, 2, 5, 10, 20, 50, 100, 200) if e < 0.8 * last] + [last]
        for ax in axes[:, j]:  # log epochs: the early epochs, where the dynamics differ, get room
            ax.set_xscale("log")
            ax.set_xticks(epochs, [str(e) for e in epochs])
            ax.minorticks_off()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[0, 0].get_legend().remove()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=len(labels) if len(datasets) > 1 else 2,
        frameon=False,
    )
    _save(fig, path)


MODE_STYLES = {"inference": "-", "batch": "--", "conditional": ":"}


def e8_batch_size(
    metrics: pd.DataFrame,
    batchstats: pd.DataFrame,
    reference: pd.DataFrame,
    gaps: pd.DataFrame,
    path,
) -> None:
    """E8, one column per dataset. Top: test accuracy against the training batch size of each
    network in each mode (stats.MODES: line style), the linear reference as a grey band. Bottom:
    the affinity gap of the conditional function with fixed batch-mates."""
    sf = stats.strong_form(metrics, batchstats, reference, gaps)
    if sf.empty:
        return _empty(path, "no E8 runs")
    datasets = ordered(sf["dataset"], vocab.DATASETS)
    fig, axes = plt.subplots(
        2,
        len(datasets),
        figsize=(TEXTWIDTH, 4.4),
        squeeze=False,
        sharex=True,
        height_ratios=[2, 1],
        layout="constrained",
    )
    colours = dict(zip(stats.STRONG_NETWORKS, PALETTE))
    for j, d in enumerate(datasets):
        top, bottom = axes[0, j], axes[1, j]
        ref = reference[reference["dataset"] == d]["test_acc"]
        if len(ref):
            mean, lo, hi = stats.t_interval(ref)
            top.axhspan(100 * lo, 100 * hi, color="0.85", zorder=0)
            top.axhline(100 * mean, color="0.5", lw=0.8, zorder=0)
        for (act, norm), colour in colours.items():
            for mode, style in MODE_STYLES.items():
                r = sf[
                    (sf["dataset"] == d)
                    & (sf["activation"] == act)
                    & (sf["norm"] == norm)
                    & (sf["mode"] == mode)
                ].sort_values("batch_size")
                if r.empty:
                    continue
                top.plot(r["batch_size"], 100 * r["mean"], style, color=colour, marker=".", ms=3)
                top.fill_between(
                    r["batch_size"], 100 * r["ci_lo"], 100 * r["ci_hi"], color=colour, alpha=0.15
                )
                if mode == "conditional" and r["cond_affine_gap"].notna().any():
                    bottom.plot(
                        r["batch_size"], r["cond_affine_gap"], ":", color=colour, marker=".", ms=3
                    )
        top.set_title(label(d))
        top.set_xscale("log", base=2)
        bottom.set_yscale("log")
        bottom.set_xlabel("training batch size $m$")
        if j == 0:
            top.set_ylabel("test accuracy (%)")
            bottom.set_ylabel("affinity gap,\nfixed mates")
    handles = [
        matplotlib.lines.Line2D([], [], color=c, label=composition(*cell))
        for cell, c in colours.items()
    ]
    handles += [
        matplotlib.lines.Line2D([], [], color="0.3", ls=ls, label=mode)
        for mode, ls in MODE_STYLES.items()
    ]
    handles.append(matplotlib.patches.Patch(color="0.85", label="linear reference"))
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7)
    _save(fig, path)


def e8_saturation(path, sizes=(2, 4, 16, 64), epsilon: float | None = None) -> None:
    """Proposition 3 measured: one unit of the study's BatchNorm layer (training mode, unit scale,
    zero shift) as a function of the example's own pre-activation z, with m - 1 batch-mates fixed
    (standard normal draws), against the closed form g(z) and the bound sqrt(m - 1)."""
    import jax.numpy as jnp
    from flax import nnx

    from bnstudy import models, theory

    eps = models.BN_EPSILON if epsilon is None else epsilon
    z = np.linspace(-12, 12, 241, dtype=np.float32)
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(1, len(sizes), figsize=(TEXTWIDTH, 1.9), layout="constrained")
    for ax, m in zip(axes, sizes):
        mates = rng.normal(size=m - 1).astype(np.float32)
        layer = models.make_norm(
            models.ModelSpec(1, 2, "identity", "batchnorm", "pre", 1, 1), nnx.Rngs(0)
        )
        batch = np.concatenate(
            [z[:, None, None], np.broadcast_to(mates[None, :, None], (len(z), m - 1, 1))], 1
        )
        measured = np.array(
            [float(layer(jnp.asarray(b), use_running_average=False)[0, 0]) for b in batch]
        )
        closed = theory.conditional_z(z, mates, eps)
        bound = np.sqrt(m - 1)
        ax.plot(z, closed, color=PALETTE[0], lw=1.2, label="closed form $g(z)$")
        ax.plot(z[::10], measured[::10], "o", ms=2.5, color=PALETTE[1], label="BatchNorm layer")
        for sign in (-1, 1):
            ax.axhline(sign * bound, color="0.5", ls="--", lw=0.8)
        ax.set_title(f"$m = {m}$, bound $\\pm{bound:.2g}$")
        ax.set_xlabel("own pre-activation $z$")
    axes[0].set_ylabel("normalized output")
    axes[0].legend(fontsize=6, loc="upper left")
    _save(fig, path)


def e9_groups(shares: pd.DataFrame, path) -> None:
    """E9: the share of the nonlinearity gap identity + GroupNorm recovers against its number of
    groups (Fieller intervals), one panel per dataset; LayerNorm and RMSNorm as horizontal lines."""
    e9 = stats.of_experiment(shares, "E9")
    e9 = e9[e9["activation"] == "identity"]
    if e9.empty:
        return _empty(path, "no E9 runs")
    datasets = ordered(e9["dataset"], vocab.DATASETS)
    fig, axes = _grid(len(datasets), 3, TEXTWIDTH / 3, 2.2, layout="constrained", sharey=True)
    for ax, d in zip(axes, datasets):
        r = e9[e9["dataset"] == d]
        gn = r[r["norm"] == "groupnorm"].sort_values("groups")
        lo = (gn["share"] - gn["share_lo"].clip(lower=-1)).clip(lower=0)
        hi = (gn["share_hi"].clip(upper=2) - gn["share"]).clip(lower=0)
        ax.errorbar(
            gn["groups"],
            100 * gn["share"],
            yerr=100 * np.vstack([lo, hi]),
            fmt="o-",
            color=PALETTE[0],
            ms=3,
            capsize=2,
            label="GroupNorm",
        )
        for k, norm in enumerate(vocab.PER_EXAMPLE_NORMS):
            row = r[r["norm"] == norm]
            if len(row):
                ax.axhline(
                    100 * row["share"].iloc[0],
                    color=PALETTE[k + 1],
                    ls="--",
                    lw=1,
                    label=label(norm),
                )
        ax.axhline(0, color="0.5", lw=0.6)
        ax.axhline(100, color="0.5", lw=0.6)
        ax.set_xscale("log", base=2)
        ax.set_title(label(d))
        ax.set_xlabel("GroupNorm groups")
    axes[0].set_ylabel("share of the gap (%)")
    axes[0].legend(fontsize=6)
    _save(fig, path)


def draw(name: str, inputs: dict, path) -> None:
    """Draw the figure `name` of the registry from the study tables it needs (input name -> table)."""
    set_style()
    entry = vocab.OUTPUTS[name]
    globals()[name](**{k: inputs[k] for k in entry.inputs}, path=path)
